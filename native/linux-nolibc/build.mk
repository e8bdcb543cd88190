# SPDX-License-Identifier: MIT
# Guest programs without a C library (nolibc.h): static, integer instructions only. They test the
# Linux front end's loader, stack, system calls and signals on their own, and run on the integer
# instruction set alone.
CFLAGS += -static -nostdlib -ffreestanding -fno-builtin -mgeneral-regs-only -fno-stack-protector -fno-pie -no-pie -fcf-protection=none
