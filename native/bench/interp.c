// SPDX-License-Identifier: MIT
// A bytecode interpreter with a switch (indirect jumps through a jump table): a small stack
// machine running a hashing loop written in its own bytecode.
#include "bench.h"

enum op {
    OP_PUSH, OP_LOAD, OP_STORE, OP_ADD, OP_SUB, OP_MUL, OP_XOR, OP_AND, OP_OR, OP_SHL, OP_SHR,
    OP_MOD, OP_LT, OP_DUP, OP_DROP, OP_SWAP, OP_JMP, OP_JZ, OP_JNZ, OP_HALT,
};

static int64_t code[256];
static int pc_end;

static int emit(int64_t v)
{
    code[pc_end] = v;
    return pc_end++;
}

static int64_t run(const int64_t *prog, int64_t *locals)
{
    int64_t stack[64];
    int sp = 0;
    const int64_t *pc = prog;
    for (;;) {
        switch ((enum op)*pc++) {
        case OP_PUSH: stack[sp++] = *pc++; break;
        case OP_LOAD: stack[sp++] = locals[*pc++]; break;
        case OP_STORE: locals[*pc++] = stack[--sp]; break;
        case OP_ADD: sp--; stack[sp - 1] += stack[sp]; break;
        case OP_SUB: sp--; stack[sp - 1] -= stack[sp]; break;
        case OP_MUL: sp--; stack[sp - 1] *= stack[sp]; break;
        case OP_XOR: sp--; stack[sp - 1] ^= stack[sp]; break;
        case OP_AND: sp--; stack[sp - 1] &= stack[sp]; break;
        case OP_OR: sp--; stack[sp - 1] |= stack[sp]; break;
        case OP_SHL: sp--; stack[sp - 1] = (int64_t)((uint64_t)stack[sp - 1] << (stack[sp] & 63)); break;
        case OP_SHR: sp--; stack[sp - 1] = (int64_t)((uint64_t)stack[sp - 1] >> (stack[sp] & 63)); break;
        case OP_MOD: sp--; stack[sp - 1] = stack[sp] ? stack[sp - 1] % stack[sp] : 0; break;
        case OP_LT: sp--; stack[sp - 1] = stack[sp - 1] < stack[sp]; break;
        case OP_DUP: stack[sp] = stack[sp - 1]; sp++; break;
        case OP_DROP: sp--; break;
        case OP_SWAP: { int64_t t = stack[sp - 1]; stack[sp - 1] = stack[sp - 2]; stack[sp - 2] = t; break; }
        case OP_JMP: pc = prog + *pc; break;
        case OP_JZ: pc = stack[--sp] == 0 ? prog + *pc : pc + 1; break;
        case OP_JNZ: pc = stack[--sp] != 0 ? prog + *pc : pc + 1; break;
        case OP_HALT: return sp > 0 ? stack[sp - 1] : 0;
        default: return -1;
        }
    }
}

int main(int argc, char **argv)
{
    double scale = bench_scale(argc, argv);
    int64_t n = bench_scaled(10000000, scale, 100);

    // locals: 0 = i, 1 = acc, 2 = n, 3 = odd count
    emit(OP_PUSH); emit(0); emit(OP_STORE); emit(0);
    emit(OP_PUSH); emit(1); emit(OP_STORE); emit(1);
    int loop = pc_end;
    emit(OP_LOAD); emit(0); emit(OP_LOAD); emit(2); emit(OP_LT);
    emit(OP_JZ); int to_end = emit(0);
    // acc = (acc * 31 + i) ^ (acc >> 7)
    emit(OP_LOAD); emit(1); emit(OP_PUSH); emit(31); emit(OP_MUL); emit(OP_LOAD); emit(0); emit(OP_ADD);
    emit(OP_LOAD); emit(1); emit(OP_PUSH); emit(7); emit(OP_SHR); emit(OP_XOR); emit(OP_STORE); emit(1);
    // if (i % 3 == 0) acc += i << 3; else odd++ when acc is odd
    emit(OP_LOAD); emit(0); emit(OP_PUSH); emit(3); emit(OP_MOD);
    emit(OP_JNZ); int to_else = emit(0);
    emit(OP_LOAD); emit(1); emit(OP_LOAD); emit(0); emit(OP_PUSH); emit(3); emit(OP_SHL); emit(OP_ADD); emit(OP_STORE); emit(1);
    emit(OP_JMP); int to_next = emit(0);
    code[to_else] = pc_end;
    emit(OP_LOAD); emit(1); emit(OP_PUSH); emit(1); emit(OP_AND);
    emit(OP_LOAD); emit(3); emit(OP_ADD); emit(OP_STORE); emit(3);
    code[to_next] = pc_end;
    // i++
    emit(OP_LOAD); emit(0); emit(OP_PUSH); emit(1); emit(OP_ADD); emit(OP_DUP); emit(OP_SWAP); emit(OP_DROP); emit(OP_STORE); emit(0);
    emit(OP_JMP); emit(loop);
    code[to_end] = pc_end;
    emit(OP_LOAD); emit(1); emit(OP_LOAD); emit(3); emit(OP_OR); emit(OP_HALT);

    int64_t locals[4] = {0, 0, n, 0};
    int64_t result = run(code, locals);
    printf("%lld iterations: acc %016llx, odd %lld, result %016llx\n", (long long)n, (unsigned long long)locals[1],
           (long long)locals[3], (unsigned long long)result);
    uint64_t sum = bench_mix(bench_mix(bench_mix(BENCH_SUM_INIT, (uint64_t)locals[1]), (uint64_t)locals[3]), (uint64_t)result);
    bench_report("interp", sum);
    return 0;
}
