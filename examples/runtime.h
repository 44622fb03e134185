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
 * Plain C: the machine executes every i32 operation of WebAssembly natively
 * except division and remainder, so `*`, `&` and shifts cost what an addition
 * costs; print_unsigned avoids `/ 10` (see there).
 */

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

/* Prints the bytes of s up to its NUL. */
static void print_str(const char *s) {
    for (; *s != 0; s++) putchar(*s);
}

/* Powers of ten that fit in 32 bits, largest first; 0 ends the table. */
static const unsigned POWERS_OF_TEN[] = {
    1000000000u, 100000000u, 10000000u, 1000000u, 100000u,
    10000u, 1000u, 100u, 10u, 1u, 0u,
};

/* Prints n in decimal. Each digit is found by counting how many times its
 * power of ten can be subtracted (at most 9 times): the machine has no native
 * division, which the front end lowers to a routine of up to 1,000 instructions. */
static void print_unsigned(unsigned n) {
    const unsigned *power = POWERS_OF_TEN;
    while (*power > n && *power != 1) power++;   /* skip leading zeros */
    for (; *power != 0; power++) {
        int digit = 0;
        while (n >= *power) {
            n -= *power;
            digit++;
        }
        putchar('0' + digit);
    }
}

/* Prints n in decimal. INT_MIN works: its magnitude 2^31 fits in an unsigned int. */
static void print_int(int n) {
    unsigned magnitude = (unsigned)n;
    if (n < 0) {
        putchar('-');
        magnitude = 0u - magnitude;
    }
    print_unsigned(magnitude);
}

/* Prints x as 8 lower-case hex digits, most significant first. */
static void print_hex(unsigned x) {
    for (int shift = 28; shift >= 0; shift -= 4) putchar("0123456789abcdef"[(x >> shift) & 15]);
}

/* Space, tab, newline and the other control characters count as spaces. */
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
        value = 10 * value + (*p - '0');
        p++;
    }
    *text = p;
    return negative ? -value : value;
}
