// SPDX-License-Identifier: MIT
using System.Numerics;

namespace Jitvmx.Lifting;

/// <summary>
/// An x87 extended-precision value: 64-bit significand with explicit integer bit (bit 63), sign in
/// bit 15 and biased exponent in bits 14:0 of <see cref="SE"/>.
/// </summary>
internal readonly record struct Float80(ulong M, ushort SE)
{
    public bool Sign => (SE & 0x8000) != 0;
    public int Exp => SE & 0x7FFF;
    public Float80 Negate() => new(M, (ushort)(SE ^ 0x8000));
    public Float80 Abs() => new(M, (ushort)(SE & 0x7FFF));

    public static readonly Float80 Indefinite = new(0xC000000000000000, 0xFFFF);
    public static Float80 Zero(bool sign) => new(0, (ushort)(sign ? 0x8000 : 0));
    public static Float80 Inf(bool sign) => new(0x8000000000000000, (ushort)(sign ? 0xFFFF : 0x7FFF));
    public static readonly Float80 One = new(0x8000000000000000, 0x3FFF);

    public override string ToString() => $"{SE:X4}:{M:X16}";
}

/// <summary>Operand classes as the x87 sees them.</summary>
internal enum F80Class { Zero, Finite, Inf, QNaN, SNaN, Unsupported }

/// <summary>
/// Exact software x87 arithmetic. Every operation rounds once, with the precision control (PC) and
/// rounding control (RC) of the control word, and accumulates the exception flags (status-word bit
/// positions: IE DE ZE OE UE PE) plus <see cref="C1"/> when the result was rounded up in magnitude.
/// Tininess is detected after rounding, as on x86.
/// </summary>
internal static class F80
{
    public const uint IE = 0x01, DE = 0x02, ZE = 0x04, OE = 0x08, UE = 0x10, PE = 0x20, C1 = 0x200;
    public const int Bias = 16383;

    /// <summary>Rounding environment: control word in, flags out.</summary>
    public struct Env(ushort cw)
    {
        public ushort Cw = cw;
        public uint Flags;
        public readonly int Rc => (Cw >> 10) & 3;
        /// <summary>Significand bits the precision control keeps (PC=01 is reserved; treated as 64).</summary>
        public readonly int Pc => ((Cw >> 8) & 3) switch { 0 => 24, 2 => 53, _ => 64 };
    }

    public static F80Class Classify(Float80 a)
    {
        int e = a.Exp;
        if (e == 0x7FFF)
        {
            if ((a.M >> 63) == 0) return F80Class.Unsupported;
            if ((a.M << 1) == 0) return F80Class.Inf;
            return (a.M & 0x4000000000000000) != 0 ? F80Class.QNaN : F80Class.SNaN;
        }
        if (e == 0) return a.M == 0 ? F80Class.Zero : F80Class.Finite;
        return (a.M >> 63) == 0 ? F80Class.Unsupported : F80Class.Finite;
    }

    public static bool IsNaN(F80Class c) => c is F80Class.QNaN or F80Class.SNaN;
    public static bool IsDenormal(Float80 a) => a.Exp == 0 && a.M != 0;

    /// <summary>Normalised significand and unbiased exponent of a finite non-zero value (value = sig/2^63 · 2^e).</summary>
    public static void Unpack(Float80 a, out int e, out ulong sig)
    {
        int be = a.Exp == 0 ? 1 : a.Exp;
        int lz = BitOperations.LeadingZeroCount(a.M);
        sig = a.M << lz;
        e = be - Bias - lz;
    }

    public static UInt128 ShiftRightJam(UInt128 v, int n)
    {
        if (n <= 0) return v;
        if (n >= 128) return v != 0 ? UInt128.One : UInt128.Zero;
        var r = v >> n;
        return (v << (128 - n)) != 0 ? r | 1 : r;
    }

    private static bool RoundUp(bool sign, UInt128 kept, UInt128 rest, UInt128 half, int rc) => rc switch
    {
        0 => rest > half || (rest == half && (kept & 1) != 0),
        1 => rest != 0 && sign,
        2 => rest != 0 && !sign,
        _ => false,
    };

    /// <summary>
    /// Rounds sig/2^127 · 2^e (sig normalised, or zero) to <paramref name="p"/> bits in a format whose
    /// normal exponents are emin..emax. Returns the significand with its integer bit at 63 (clear
    /// for a denormal, whose exponent is then emin) and sets <paramref name="inf"/> on overflow to infinity.
    /// With <paramref name="biasAdjust"/> (register destinations), an unmasked overflow or underflow
    /// returns the rounded value with its exponent wrapped by 24576 instead.
    /// </summary>
    public static ulong Round(bool sign, ref int e, UInt128 sig, int p, int emin, int emax, ref Env env, out bool inf, bool biasAdjust = false)
    {
        inf = false;
        if (sig == 0) return 0;
        int shift = 128 - p;
        UInt128 mask = (UInt128.One << shift) - 1, half = UInt128.One << (shift - 1);
        int rc = env.Rc;
        bool tiny = false;
        // Unmasked overflow/underflow into a register deliver the rounded result with the exponent wrapped by 3·2^13.
        bool adjustUnder = biasAdjust && (env.Cw & UE) == 0, adjustOver = biasAdjust && (env.Cw & OE) == 0;
        if (e < emin)
        {
            // Tiny after rounding: unless rounding with unbounded exponent carries up to 2^emin.
            var k = sig >> shift;
            tiny = e < emin - 1 || !(RoundUp(sign, k, sig & mask, half, rc) && k + 1 == UInt128.One << p);
            if (!adjustUnder)
            {
                sig = ShiftRightJam(sig, emin - e);
                e = emin;
            }
        }
        var kept = sig >> shift;
        var rest = sig & mask;
        bool inc = RoundUp(sign, kept, rest, half, rc);
        if (inc)
        {
            kept++;
            if ((kept >> p) != 0) { kept >>= 1; e++; }
        }
        if (e > emax && adjustOver)
        {
            env.Flags |= OE | PE;
            e -= 24576;
        }
        else if (e > emax)
        {
            env.Flags |= OE | PE;
            if (rc == 0 || (rc == 1 && sign) || (rc == 2 && !sign))
            {
                inf = true;
                env.Flags |= C1;
                return 0x8000000000000000;
            }
            e = emax;
            return ulong.MaxValue << (64 - p);
        }
        if (tiny && (env.Cw & UE) == 0) env.Flags |= UE;
        if (tiny && adjustUnder) e += 24576;
        if (rest != 0)
        {
            env.Flags |= PE;
            if (tiny) env.Flags |= UE;
            if (inc) env.Flags |= C1;
        }
        return (ulong)kept << (64 - p);
    }

    /// <summary>Rounds to an extended-precision value with <paramref name="p"/> significant bits.</summary>
    public static Float80 Pack(bool sign, int e, UInt128 sig, int p, ref Env env)
    {
        ulong m = Round(sign, ref e, sig, p, 1 - Bias, Bias, ref env, out bool inf, biasAdjust: true);
        if (inf) return Float80.Inf(sign);
        ushort s = (ushort)(sign ? 0x8000 : 0);
        if (m == 0) return new(0, s);
        return new(m, (ushort)(s | ((m >> 63) == 0 ? 0 : e + Bias)));
    }

    private static Float80 Quiet(Float80 a) => new(a.M | 0x4000000000000000, a.SE);

    /// <summary>The x87 NaN result for two operands, at least one a NaN (IE on a signalling NaN).</summary>
    public static Float80 PropagateNaN(Float80 a, Float80 b, ref Env env)
    {
        var ca = Classify(a);
        var cb = Classify(b);
        if (ca == F80Class.SNaN || cb == F80Class.SNaN) env.Flags |= IE;
        if (!IsNaN(ca)) return Quiet(b);
        if (!IsNaN(cb)) return Quiet(a);
        ulong ma = a.M & 0x7FFFFFFFFFFFFFFF, mb = b.M & 0x7FFFFFFFFFFFFFFF;
        // An SNaN and a QNaN give the QNaN; otherwise the larger significand (then the smaller sign word).
        if (ca != cb) return ca == F80Class.QNaN ? a : b;
        if (ma != mb) return Quiet(ma > mb ? a : b);
        return Quiet(a.SE <= b.SE ? a : b);
    }

    /// <summary>Common preamble of the two-operand operations: NaNs, unsupported encodings, denormal flag.</summary>
    private static bool Special2(Float80 a, Float80 b, ref Env env, out Float80 r, out F80Class ca, out F80Class cb)
    {
        ca = Classify(a);
        cb = Classify(b);
        r = default;
        if (ca == F80Class.Unsupported || cb == F80Class.Unsupported)
        {
            env.Flags |= IE;
            r = Float80.Indefinite;
            return true;
        }
        if (IsNaN(ca) || IsNaN(cb))
        {
            r = PropagateNaN(a, b, ref env);
            return true;
        }
        if (IsDenormal(a) || IsDenormal(b)) env.Flags |= DE;
        return false;
    }

    /// <summary>The invalid-operation response; it takes precedence over the denormal-operand flag.</summary>
    private static Float80 Invalid(ref Env env)
    {
        env.Flags = (env.Flags & ~DE) | IE;
        return Float80.Indefinite;
    }

    public static Float80 Add(Float80 a, Float80 b, bool subtract, ref Env env)
    {
        if (Special2(a, b, ref env, out var r, out var ca, out var cb)) return r;
        if (subtract) b = b.Negate();
        if (ca == F80Class.Inf || cb == F80Class.Inf)
        {
            if (ca == F80Class.Inf && cb == F80Class.Inf && a.Sign != b.Sign) return Invalid(ref env);
            return ca == F80Class.Inf ? a : b;
        }
        int p = env.Pc;
        if (ca == F80Class.Zero && cb == F80Class.Zero)
            return Float80.Zero(a.Sign == b.Sign ? a.Sign : env.Rc == 1);
        // x + 0 is x rounded to the precision control (which may be narrower than x).
        if (ca == F80Class.Zero) return Repack(b, p, ref env);
        if (cb == F80Class.Zero) return Repack(a, p, ref env);
        Unpack(a, out int ea, out ulong sa);
        Unpack(b, out int eb, out ulong sb);
        bool signA = a.Sign, signB = b.Sign;
        if (ea < eb || (ea == eb && sa < sb))
        {
            (ea, eb) = (eb, ea);
            (sa, sb) = (sb, sa);
            (signA, signB) = (signB, signA);
        }
        // Significands at bits 126..63, leaving room for the carry; the smaller one shifted with a sticky bit.
        UInt128 x = (UInt128)sa << 63, y = ShiftRightJam((UInt128)sb << 63, ea - eb);
        UInt128 s;
        int e = ea + 1;
        if (signA == signB) s = x + y;
        else
        {
            s = x - y;
            if (s == 0) return Float80.Zero(env.Rc == 1);
        }
        int lz = (int)UInt128.LeadingZeroCount(s);
        return Pack(signA, e - lz, s << lz, p, ref env);
    }

    /// <summary>A finite value rounded to <paramref name="p"/> bits (denormal flag already handled).</summary>
    private static Float80 Repack(Float80 a, int p, ref Env env)
    {
        if (p == 64 && !IsDenormal(a)) return a;
        Unpack(a, out int e, out ulong s);
        return Pack(a.Sign, e, (UInt128)s << 64, p, ref env);
    }

    public static Float80 Mul(Float80 a, Float80 b, ref Env env)
    {
        if (Special2(a, b, ref env, out var r, out var ca, out var cb)) return r;
        bool sign = a.Sign != b.Sign;
        if (ca == F80Class.Inf || cb == F80Class.Inf)
            return ca == F80Class.Zero || cb == F80Class.Zero ? Invalid(ref env) : Float80.Inf(sign);
        if (ca == F80Class.Zero || cb == F80Class.Zero) return Float80.Zero(sign);
        Unpack(a, out int ea, out ulong sa);
        Unpack(b, out int eb, out ulong sb);
        UInt128 prod = (UInt128)sa * sb;
        int e = ea + eb + 1;
        if ((prod >> 127) == 0) { prod <<= 1; e--; }
        return Pack(sign, e, prod, env.Pc, ref env);
    }

    public static Float80 Div(Float80 a, Float80 b, ref Env env)
    {
        if (Special2(a, b, ref env, out var r, out var ca, out var cb)) return r;
        bool sign = a.Sign != b.Sign;
        if (ca == F80Class.Inf) return cb == F80Class.Inf ? Invalid(ref env) : Float80.Inf(sign);
        if (cb == F80Class.Inf) return Float80.Zero(sign);
        if (cb == F80Class.Zero)
        {
            if (ca == F80Class.Zero) return Invalid(ref env);
            env.Flags = (env.Flags & ~DE) | ZE;
            return Float80.Inf(sign);
        }
        if (ca == F80Class.Zero) return Float80.Zero(sign);
        Unpack(a, out int ea, out ulong sa);
        Unpack(b, out int eb, out ulong sb);
        int e = ea - eb;
        UInt128 num = (UInt128)sa << (sa < sb ? 64 : 63);
        if (sa < sb) e--;
        UInt128 q = num / sb, rem = num % sb;
        UInt128 q2 = (rem << 64) / sb, rem2 = (rem << 64) % sb;
        UInt128 sig = (q << 64) | q2 | (rem2 != 0 ? 1u : 0u);
        return Pack(sign, e, sig, env.Pc, ref env);
    }

    public static Float80 Sqrt(Float80 a, ref Env env)
    {
        var c = Classify(a);
        if (c == F80Class.Unsupported) return Invalid(ref env);
        if (IsNaN(c)) return PropagateNaN(a, a, ref env);
        if (c == F80Class.Zero) return a;
        if (a.Sign) return Invalid(ref env);
        if (c == F80Class.Inf) return a;
        if (IsDenormal(a)) env.Flags |= DE;
        Unpack(a, out int e, out ulong s);
        int k = (e & 1) != 0 ? 64 : 63;
        UInt128 n = (UInt128)s << k;
        ulong root = ISqrt(n);
        UInt128 rem = n - (UInt128)root * root;
        UInt128 sig = ((UInt128)root << 64) | (rem > root ? (UInt128)1 << 63 : 0) | (rem != 0 ? 1u : 0u);
        return Pack(false, (e - 63 - k) / 2 + 63, sig, env.Pc, ref env);
    }

    /// <summary>Floor of the square root of a 128-bit integer of at least 2^126.</summary>
    private static ulong ISqrt(UInt128 n)
    {
        ulong x = (ulong)Math.Min(Math.Sqrt((double)n), 18446744073709549568.0);
        for (int i = 0; i < 3; i++)
        {
            UInt128 nx = ((UInt128)x + n / x) >> 1;
            x = nx > ulong.MaxValue ? ulong.MaxValue : (ulong)nx;
        }
        while ((UInt128)x * x > n) x--;
        while (x != ulong.MaxValue && (UInt128)(x + 1) * (x + 1) <= n) x++;
        return x;
    }

    /// <summary>Rounds to an integral value (FRNDINT; full precision, the control word's rounding).</summary>
    public static Float80 RoundInt(Float80 a, ref Env env, bool truncate = false)
    {
        var c = Classify(a);
        if (c == F80Class.Unsupported) return Invalid(ref env);
        if (IsNaN(c)) return PropagateNaN(a, a, ref env);
        if (c is F80Class.Zero or F80Class.Inf) return a;
        if (IsDenormal(a)) env.Flags |= DE;
        Unpack(a, out int e, out ulong s);
        if (e >= 63) return a;
        int rc = truncate ? 3 : env.Rc;
        // Integer part and the fraction as 128-bit fixed point (fraction in the low 64 bits).
        // Below 2^-64 only a sticky bit of the fraction matters.
        UInt128 v = e >= -64 ? ((UInt128)s << 64) >> (63 - e) : 1;
        UInt128 kept = v >> 64, rest = v & ulong.MaxValue;
        bool inc = RoundUp(a.Sign, kept, rest, (UInt128)1 << 63, rc);
        if (rest != 0)
        {
            env.Flags |= PE;
            if (inc) env.Flags |= C1;
        }
        if (inc) kept++;
        if (kept == 0) return Float80.Zero(a.Sign);
        return FromMagnitude(a.Sign, (ulong)kept, ref env, kept > ulong.MaxValue);
    }

    private static Float80 FromMagnitude(bool sign, ulong mag, ref Env env, bool carry64 = false)
    {
        if (carry64) return new(0x8000000000000000, (ushort)((sign ? 0x8000 : 0) | (64 + Bias)));
        if (mag == 0) return Float80.Zero(sign);
        int lz = BitOperations.LeadingZeroCount(mag);
        return new(mag << lz, (ushort)((sign ? 0x8000 : 0) | (63 - lz + Bias)));
    }

    /// <summary>Exact conversion of a signed integer.</summary>
    public static Float80 FromInt(long v)
    {
        var env = new Env(0x37F);
        return FromMagnitude(v < 0, v < 0 ? (ulong)-v : (ulong)v, ref env);
    }

    /// <summary>Converts to a signed integer of <paramref name="bits"/> bits (FIST/FISTTP); out of range or NaN is IE and the integer indefinite.</summary>
    public static long ToInt(Float80 a, int bits, bool truncate, ref Env env)
    {
        long indefinite = long.MinValue >> (64 - bits);
        var c = Classify(a);
        if (c is F80Class.Unsupported or F80Class.Inf || IsNaN(c)) { env.Flags |= IE; return indefinite; }
        if (c == F80Class.Zero) return 0;
        var probe = env;
        var r = RoundInt(a, ref probe, truncate);
        Unpack(r.M == 0 ? Float80.One : r, out int e, out ulong s);
        if (r.M == 0) { env.Flags |= probe.Flags & ~DE; return 0; }
        // |r| < 2^(bits-1), or exactly -2^(bits-1).
        bool fits = e < bits - 1 || (e == bits - 1 && r.Sign && s == 0x8000000000000000);
        if (!fits) { env.Flags |= IE; return indefinite; }
        env.Flags |= probe.Flags & ~DE;
        ulong mag = s >> (63 - e);
        return r.Sign ? -(long)mag : (long)mag;
    }

    /// <summary>Exact widening of a float32/float64 (given as bits); signalling NaNs are quieted with IE, denormals flag DE.</summary>
    public static Float80 FromIeee(ulong bits, int fracBits, int expBits, ref Env env)
    {
        bool sign = (bits >> (fracBits + expBits)) != 0;
        int emax = (1 << expBits) - 1, bias = emax >> 1;
        int be = (int)(bits >> fracBits) & emax;
        ulong frac = bits & ((1UL << fracBits) - 1);
        ushort s = (ushort)(sign ? 0x8000 : 0);
        if (be == emax)
        {
            if (frac == 0) return Float80.Inf(sign);
            ulong m = 0x8000000000000000 | (frac << (63 - fracBits));
            if ((m & 0x4000000000000000) == 0) { env.Flags |= IE; m |= 0x4000000000000000; }
            return new(m, (ushort)(s | 0x7FFF));
        }
        if (be == 0)
        {
            if (frac == 0) return new(0, s);
            env.Flags |= DE;
            int lz = BitOperations.LeadingZeroCount(frac);
            // value = frac · 2^(1 - bias - fracBits)
            return new(frac << lz, (ushort)(s | (1 - bias - fracBits + 63 - lz + Bias)));
        }
        return new(0x8000000000000000 | (frac << (63 - fracBits)), (ushort)(s | (be - bias + Bias)));
    }

    /// <summary>Rounds to float32/float64 bits (FST m32/m64).</summary>
    public static ulong ToIeee(Float80 a, int fracBits, int expBits, ref Env env)
    {
        int emaxField = (1 << expBits) - 1, bias = emaxField >> 1;
        ulong signBit = a.Sign ? 1UL << (fracBits + expBits) : 0;
        ulong expMask = (ulong)emaxField << fracBits;
        var c = Classify(a);
        switch (c)
        {
            case F80Class.Unsupported:
                env.Flags |= IE;
                return (1UL << (fracBits + expBits)) | expMask | (1UL << (fracBits - 1));
            case F80Class.Zero: return signBit;
            case F80Class.Inf: return signBit | expMask;
            case F80Class.SNaN or F80Class.QNaN:
                if (c == F80Class.SNaN) env.Flags |= IE;
                return signBit | expMask | (1UL << (fracBits - 1)) | ((a.M << 1) >> (64 - fracBits));
        }
        Unpack(a, out int e, out ulong s);
        ulong m = Round(a.Sign, ref e, (UInt128)s << 64, fracBits + 1, 1 - bias, bias, ref env, out bool inf);
        if (inf) return signBit | expMask;
        if (m == 0) return signBit;
        ulong field = (m >> 63) == 0 ? 0 : (ulong)(e + bias);
        return signBit | (field << fracBits) | ((m << 1) >> (64 - fracBits));
    }

    /// <summary>Compares: 0 less, 1 equal, 2 greater, 3 unordered. <paramref name="quiet"/> (FUCOM) raises IE only for signalling NaNs.</summary>
    public static int Compare(Float80 a, Float80 b, bool quiet, ref Env env)
    {
        var ca = Classify(a);
        var cb = Classify(b);
        if (ca == F80Class.Unsupported || cb == F80Class.Unsupported) { env.Flags |= IE; return 3; }
        if (IsNaN(ca) || IsNaN(cb))
        {
            if (!quiet || ca == F80Class.SNaN || cb == F80Class.SNaN) env.Flags |= IE;
            return 3;
        }
        if (IsDenormal(a) || IsDenormal(b)) env.Flags |= DE;
        if (ca == F80Class.Zero && cb == F80Class.Zero) return 1;
        int ka = SortKey(a, ca), kb = SortKey(b, cb);
        if (ka != kb || ka == 0) return ka < kb ? 0 : ka > kb ? 2 : 1;
        // Same sign, both finite non-zero.
        Unpack(a, out int ea, out ulong sa);
        Unpack(b, out int eb, out ulong sb);
        int mag = ea != eb ? ea.CompareTo(eb) : sa.CompareTo(sb);
        if (a.Sign) mag = -mag;
        return mag < 0 ? 0 : mag > 0 ? 2 : 1;
    }

    private static int SortKey(Float80 a, F80Class c) => c switch
    {
        F80Class.Zero => 0,
        F80Class.Inf => a.Sign ? -2 : 2,
        _ => a.Sign ? -1 : 1,
    };

    /// <summary>FSCALE: a · 2^trunc(b).</summary>
    public static Float80 Scale(Float80 a, Float80 b, ref Env env)
    {
        if (Special2(a, b, ref env, out var r, out var ca, out var cb)) return r;
        if (cb == F80Class.Inf)
        {
            if (!b.Sign) return ca == F80Class.Zero ? Invalid(ref env) : ca == F80Class.Inf ? a : Float80.Inf(a.Sign);
            return ca == F80Class.Inf ? Invalid(ref env) : Float80.Zero(a.Sign);
        }
        if (ca is F80Class.Zero or F80Class.Inf) return a;
        int n;
        if (cb == F80Class.Zero) n = 0;
        else
        {
            Unpack(b, out int eb, out ulong sb);
            long mag = eb < 0 ? 0 : eb > 30 ? 1 << 30 : (long)(sb >> (63 - eb));
            n = (int)(b.Sign ? -mag : mag);
        }
        Unpack(a, out int ea, out ulong sa);
        return Pack(a.Sign, ea + n, (UInt128)sa << 64, 64, ref env);
    }

    /// <summary>FXTRACT: (exponent, significand) of a.</summary>
    public static (Float80 Exponent, Float80 Significand) Extract(Float80 a, ref Env env)
    {
        var c = Classify(a);
        if (c == F80Class.Unsupported) { var i = Invalid(ref env); return (i, i); }
        if (IsNaN(c)) { var q = PropagateNaN(a, a, ref env); return (q, q); }
        if (c == F80Class.Zero)
        {
            env.Flags |= ZE;
            return (Float80.Inf(true), a);
        }
        if (c == F80Class.Inf) return (Float80.Inf(false), a);
        if (IsDenormal(a)) env.Flags |= DE;
        Unpack(a, out int e, out ulong s);
        return (FromInt(e), new Float80(s, (ushort)((a.SE & 0x8000) | Bias)));
    }

    /// <summary>
    /// FPREM (truncating) / FPREM1 (round to nearest) partial remainder. Returns the remainder and
    /// the status bits C0 C1 C2 C3 it produces (C2 set when incomplete, else the low quotient bits).
    /// </summary>
    public static Float80 Remainder(Float80 a, Float80 b, bool nearest, ref Env env, out ushort cc)
    {
        cc = 0;
        if (Special2(a, b, ref env, out var r, out var ca, out var cb)) return r;
        if (ca == F80Class.Inf || cb == F80Class.Zero) return Invalid(ref env);
        // A pseudo-denormal dividend comes back with its exponent normalised to 1.
        if (ca == F80Class.Zero || cb == F80Class.Inf) return a.Exp == 0 && a.M != 0 && (a.M >> 63) != 0 ? new(a.M, (ushort)(a.SE | 1)) : a;
        Unpack(a, out int ea, out ulong sa);
        Unpack(b, out int eb, out ulong sb);
        int d = ea - eb;
        BigInteger A = sa, B = sb;
        BigInteger q;
        BigInteger rem;
        int lsb; // exponent of the remainder's unit (value = rem · 2^(lsb - 63))
        if (d < 64)
        {
            if (d >= 0) { A <<= d; lsb = eb; } else { B <<= -d; lsb = ea; }
            q = BigInteger.DivRem(A, B, out rem);
            if (nearest && (rem * 2 > B || (rem * 2 == B && !q.IsEven))) { q += 1; rem -= B; }
            ulong ql = (ulong)(q & 7);
            if ((ql & 4) != 0) cc |= 0x100; // C0 = Q2
            if ((ql & 1) != 0) cc |= 0x200; // C1 = Q0
            if ((ql & 2) != 0) cc |= 0x4000; // C3 = Q1
        }
        else
        {
            int n = 32 + d % 32;
            A <<= n;
            lsb = ea - n;
            q = BigInteger.DivRem(A, B, out rem);
            cc = 0x400;
        }
        bool sign = a.Sign;
        if (rem.Sign < 0) { sign = !sign; rem = -rem; }
        if (rem.IsZero) return Float80.Zero(a.Sign);
        var mag = (UInt128)rem;
        int lz = (int)UInt128.LeadingZeroCount(mag);
        var exact = new Env((ushort)(env.Cw | 0x0300)) { Flags = 0 };
        var res = Pack(sign, lsb - 63 + 127 - lz, mag << lz, 64, ref exact);
        env.Flags |= exact.Flags & UE;
        return res;
    }

    /// <summary>Packed BCD (18 digits, sign in bit 79) to a value.</summary>
    public static Float80 FromBcd(ulong lo, ushort hi)
    {
        int top = hi & 0xFF;
        long v = (top >> 4) * 10 + (top & 0xF);
        for (int i = 15; i >= 0; i--) v = v * 10 + (long)((lo >> (i * 4)) & 0xF);
        var r = FromInt(v);
        return (hi & 0x8000) != 0 ? r.Negate() : r;
    }

    /// <summary>A value to packed BCD, rounded with the control word; IE and the BCD indefinite when it does not fit.</summary>
    public static (ulong Lo, ushort Hi) ToBcd(Float80 a, ref Env env)
    {
        var probe = env;
        long v = ToInt(a, 64, false, ref probe);
        bool bad = (probe.Flags & IE) != 0 || v >= 1_000_000_000_000_000_000 || v <= -1_000_000_000_000_000_000;
        if (bad) { env.Flags |= IE; return (0xC000000000000000, 0xFFFF); }
        env.Flags = probe.Flags;
        bool neg = v < 0 || (v == 0 && a.Sign && Classify(a) != F80Class.Unsupported);
        ulong mag = (ulong)Math.Abs(v);
        ulong lo = 0;
        for (int i = 0; i < 16; i++) { lo |= (mag % 10) << (i * 4); mag /= 10; }
        ushort hi = (ushort)((mag % 10) | ((mag / 10) << 4) | (neg ? 0x8000u : 0));
        return (lo, hi);
    }
}
