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

/* Prints the low 8 bits of c; returns c, like the C library's putchar. */
static inline int putchar(int c) {
    output_byte(c);
    return c;
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

/* Prints x as 8 lower-case hex digits, most significant first. */
static void print_hex(unsigned x) {
    for (int shift = 28; shift >= 0; shift -= 4) putchar("0123456789abcdef"[(x >> shift) & 15]);
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
