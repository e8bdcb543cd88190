# SPDX-License-Identifier: MIT
# The same guest programs as native/linux/, linked statically against musl.
CC := musl-gcc
CFLAGS += -static
PROGRAMS := $(basename $(notdir $(wildcard linux/*.c)))
$(foreach p,$(PROGRAMS),$(eval $(p)_SRCS := ../linux/$(p).c))
SKIP := $(if $(shell command -v musl-gcc 2>/dev/null),,musl-gcc is not installed (Debian package musl-tools))
LDLIBS += -lm
