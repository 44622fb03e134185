/* runtime.h: the whole C runtime of wasmtf's examples (there is no libc).
 *
 * The compiler force-includes this header (`-include runtime.h`) into every
 * example. A program talks to the outside world through exactly two doors
 * (SPEC section 5):
 *   - input:  `void compute(const char *input)` receives a NUL-terminated
 *             string that the prompt placed in memory;
 *   - output: `putchar(c)`, which calls the one allowed import,
 *             `env.output_byte`, and becomes the `output` instruction.
 *
 * Cost model. The transformer natively executes add, sub, comparisons, loads
 * and stores. Multiplication, division, remainder, and/or/xor and shifts are
 * lowered by the front end to loops of ~32 steps (hundreds of instructions),
 * so these helpers use none of them: print_int subtracts powers of ten
 * (at most 9 subtractions per digit) and parse_int multiplies by ten with
 * additions. NO_UNROLL and opaque help keep clang from reintroducing such
 * operations (see examples/README.md).
 */

/* Put before a small loop whose trip count clang can compute: clang would
 * otherwise unroll it four times and find the leftover iterations with
 * `count & 3`, a bitwise operation that is expensive here. */
#define NO_UNROLL _Pragma("clang loop unroll(disable)")

__attribute__((import_module("env"), import_name("output_byte")))
void output_byte(int byte);

/* Prints the low 8 bits of c; returns the byte written, (unsigned char)c, like
 * the C library's putchar. (A .wasm that imports `int putchar(int)` itself as
 * env.putchar gets the same output instruction and result, SPEC 5.) */
static inline int putchar(int c) {
    output_byte(c);
    return (unsigned char)c;
}

/* Number of bytes before the terminating NUL. */
static int str_len(const char *s) {
    const char *end = s;
    while (*end != 0) end++;
    return (int)(end - s);
}

/* Prints the str_len(s) bytes of s. (A single loop "print while not NUL"
 * would make clang mask each byte with `& 255`, which is expensive here.) */
static void print_str(const char *s) {
    const unsigned char *byte = (const unsigned char *)s;
    const unsigned char *end = byte + str_len(s);
    for (; byte != end; byte++) putchar(*byte);
}

/* Powers of ten that fit in 32 bits, largest first; 0 ends the table. */
static const unsigned POWERS_OF_TEN[] = {
    1000000000u, 100000000u, 10000000u, 1000000u, 100000u,
    10000u, 1000u, 100u, 10u, 1u, 0u,
};

/* Prints n in decimal. Each digit is found by counting how many times its
 * power of ten can be subtracted (at most 9 times), so no division is needed.
 * INT_MIN works: its magnitude 2^31 fits in an unsigned int. */
static void print_int(int n) {
    unsigned magnitude = (unsigned)n;
    if (n < 0) {
        putchar('-');
        magnitude = 0u - magnitude;
    }
    if (magnitude == 0) {
        putchar('0');
        return;
    }
    const unsigned *power = POWERS_OF_TEN;
    while (*power > magnitude) power++;           /* skip leading zeros */
    for (; *power != 0; power++) {
        int digit = 0;
        while (magnitude >= *power) {
            magnitude -= *power;
            digit++;
        }
        putchar('0' + digit);
    }
}

/* Returns x unchanged. The empty asm statement hides x's value and range
 * from the optimizer, which would otherwise turn some additions into shifts
 * or multiplications, or compute with 8-bit values and mask the results
 * with `& 255` (all expensive here). */
static inline int opaque(int x) {
    __asm__("" : "+r"(x));
    return x;
}

/* Returns 10 * x with additions only: 10x = 8x + 2x. (Without opaque,
 * clang would write x + x as a shift and the sum as a multiplication.) */
static inline int times_ten(int x) {
    int twice = x + opaque(x);
    int four_times = twice + opaque(twice);
    int eight_times = four_times + opaque(four_times);
    return eight_times + opaque(twice);
}

/* Space, tab, newline and the other control characters count as spaces.
 * (A chain of == tests would be compiled into a bitmask test.) */
static inline int is_space(int c) {
    return c > 0 && c <= ' ';
}

static inline int is_digit(int c) {
    return c >= '0' && c <= '9';
}

/* Reads a decimal integer at *text: skips spaces, accepts one optional '-',
 * then digits. Advances *text past what it read; returns 0 if there are no
 * digits. Overflow wraps around (no check). */
static int parse_int(const char **text) {
    const char *p = *text;
    while (is_space(*p)) p++;
    int negative = 0;
    if (*p == '-') {
        negative = 1;
        p++;
    }
    int value = 0;
    while (is_digit(*p)) {
        value = times_ten(value) + (*p - '0');
        p++;
    }
    *text = p;
    return negative ? -value : value;
}

/* memcpy, memset, memmove, memcmp: clang calls them by name for struct
 * copies and large initialisers, even with -fno-builtin, so a program that
 * copies a big struct needs them to link. Byte by byte (exact for any
 * alignment and overlap); -fno-builtin keeps clang from turning these loops
 * back into calls of themselves. */
void *memcpy(void *destination, const void *source, __SIZE_TYPE__ count) {
    unsigned char *to = destination;
    const unsigned char *from = source;
    NO_UNROLL
    for (unsigned char *end = to + count; to != end; to++, from++) *to = *from;
    return destination;
}

void *memset(void *destination, int byte, __SIZE_TYPE__ count) {
    unsigned char *to = destination;
    NO_UNROLL
    for (unsigned char *end = to + count; to != end; to++) *to = (unsigned char)byte;
    return destination;
}

/* Copies forward when the destination lies below the source, else backward,
 * so overlapping bytes are read before they are overwritten. */
void *memmove(void *destination, const void *source, __SIZE_TYPE__ count) {
    unsigned char *to = destination;
    const unsigned char *from = source;
    if (to < from) return memcpy(destination, source, count);
    NO_UNROLL
    while (count != 0) {
        count--;
        to[count] = from[count];
    }
    return destination;
}

/* The difference of the first differing bytes (as unsigned char), or 0. */
int memcmp(const void *left, const void *right, __SIZE_TYPE__ count) {
    const unsigned char *a = left, *b = right;
    NO_UNROLL
    for (const unsigned char *end = a + count; a != end; a++, b++)
        if (*a != *b) return *a - *b;
    return 0;
}

#ifdef __wasm__
/* __multi3: the 128-bit product (mod 2^128), which clang calls for the high
 * word of a 64-bit multiply, e.g. when it divides a 64-bit number by a
 * constant (x / 10 becomes a multiplication). From 32-bit limbs:
 * a_lo * b_lo = p00 + 2^32 (p01 + p10) + 2^64 p11 with each p < 2^64, and the
 * middle column (p00 >> 32) + low(p01) + low(p10) < 3 * 2^32 cannot wrap. */
__int128 __multi3(__int128 a, __int128 b) {
    unsigned long long a_lo = (unsigned long long)a, a_hi = (unsigned long long)(a >> 64);
    unsigned long long b_lo = (unsigned long long)b, b_hi = (unsigned long long)(b >> 64);
    unsigned long long a0 = (unsigned)a_lo, a1 = a_lo >> 32, b0 = (unsigned)b_lo, b1 = b_lo >> 32;
    unsigned long long p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    unsigned long long middle = (p00 >> 32) + (unsigned)p01 + (unsigned)p10;
    unsigned long long low = (middle << 32) | (unsigned)p00;
    unsigned long long high = p11 + (p01 >> 32) + (p10 >> 32) + (middle >> 32) + a_lo * b_hi + a_hi * b_lo;
    return (__int128)(((unsigned __int128)high << 64) | low);
}
#endif
