# SPDX-License-Identifier: MIT
# Guest programs for the Linux front end's tests: static glibc executables.
CFLAGS += -static
LDLIBS += -lm
