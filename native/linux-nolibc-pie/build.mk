# SPDX-License-Identifier: MIT
# native/linux-nolibc/hello.c as a static-PIE executable (ET_DYN without PT_INTERP). It has no
# relocations to apply, so it runs at any base without a self-relocating start-up.
CFLAGS += -static-pie -fPIE -nostdlib -ffreestanding -fno-builtin -mgeneral-regs-only -fno-stack-protector -fcf-protection=none
PROGRAMS := hello
hello_SRCS := ../linux-nolibc/hello.c
