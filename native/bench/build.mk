# SPDX-License-Identifier: MIT
# Whole-program benchmarks for `jitvmx bench`: static glibc executables, each about one second
# natively at scale 1 (argv[1] is an optional scale factor for the work, e.g. 0.001 in tests).
CFLAGS += -static
LDLIBS += -lm
