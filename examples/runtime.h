/* runtime.h: the whole C runtime of wasmtf's examples (there is no libc).
 *
 * The compiler force-includes this header (`-include runtime.h`) into every
 * example. A program talks to the outside world through exactly two doors
 * (SPEC section 5):
 *   - input:  `void compute(const char *input)` receives a NUL-terminated
 *             string that the prompt placed in memory;
 *   - output: `putchar(c)`, which calls the one allowed import,
 *             `env.output_byte`, and becomes the `output` instruction
 *             (`printf` below writes through it).
 *
 * Plain C: the machine executes every i32 operation of WebAssembly natively,
 * so `*`, `&` and shifts cost what an addition costs, and `/` and `%` one
 * group of 9 tokens (SPEC 12).
 */

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

/* Prints the bytes of s up to its NUL. */
static void print_str(const char *s) {
    for (; *s != 0; s++) putchar(*s);
}

/* Prints n in decimal: its digits from the last, then in reverse. */
static void print_unsigned(unsigned n) {
    char digits[10];
    int count = 0;
    do {
        digits[count++] = (char)('0' + n % 10);
        n /= 10;
    } while (n != 0);
    while (count > 0) putchar(digits[--count]);
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
static int parse_int_from(const char **text) {
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

/* The same reading at text, which does not move. */
static int parse_int_at(const char *text) {
    return parse_int_from(&text);
}

/* The same for a text of (non-const) chars. */
static int parse_int_from_chars(char **text) {
    return parse_int_from((const char **)text);
}

/* parse_int(&text) reads and moves text past the number (parse_int_from, text a const
 * char * or a char *); parse_int(p), as programs written for transformer-vm's runtime.h
 * call it, reads at p and leaves p (parse_int_at): on digits the value that runtime.h's
 * parse_int reads, and like atoi it also skips spaces and reads a '-'. */
#define parse_int(text) \
    _Generic((text), const char **: parse_int_from, char **: parse_int_from_chars, default: parse_int_at)(text)

/* printf with %d (or %i), %u, %x, %c, %s and %% (transformer-vm's runtime.h has %d,
 * %s, %c and %%, SPEC 5); another conversion is printed as written, without width
 * or flags. Returns the number of bytes written, as the C library's does. */
__attribute__((noinline)) static int printf(const char *format, ...) {
    __builtin_va_list arguments;
    __builtin_va_start(arguments, format);
    int written = 0;
    for (const char *f = format; *f != 0; f++) {
        char conversion = f[1];
        if (*f != '%' || conversion == 0) {
            putchar(*f);
            written++;
            continue;
        }
        f++;
        if (conversion == 'd' || conversion == 'i' || conversion == 'u' || conversion == 'x') {
            unsigned n = __builtin_va_arg(arguments, unsigned), base = conversion == 'x' ? 16 : 10;
            if (conversion != 'u' && conversion != 'x' && (int)n < 0) {
                putchar('-');
                written++;
                n = 0u - n;  /* INT_MIN's magnitude 2^31 fits */
            }
            char digits[10];  /* 2^32 - 1 has 10 decimal digits, 8 hex */
            int count = 0;
            do {
                digits[count++] = "0123456789abcdef"[n % base];
                n /= base;
            } while (n != 0);
            written += count;
            while (count > 0) putchar(digits[--count]);
        } else if (conversion == 's') {
            for (const char *s = __builtin_va_arg(arguments, const char *); *s != 0; s++, written++) putchar(*s);
        } else if (conversion == 'c') {
            putchar(__builtin_va_arg(arguments, int));
            written++;
        } else {
            if (conversion != '%') {
                putchar('%');
                written++;
            }
            putchar(conversion);
            written++;
        }
    }
    __builtin_va_end(arguments);
    return written;
}

/* sscanf with %d only (as transformer-vm's runtime.h, SPEC 5): a space in the format
 * skips any spaces of the text, %d skips spaces and reads an optional sign and
 * digits (wrapping on overflow, as parse_int), any other byte must match itself.
 * Returns the number of integers stored, or -1 when the text ends before the first. */
__attribute__((noinline)) static int sscanf(const char *text, const char *format, ...) {
    __builtin_va_list arguments;
    __builtin_va_start(arguments, format);
    int stored = 0;
    for (const char *f = format; *f != 0; f++) {
        if (is_space(*f)) {
            while (is_space(*text)) text++;
            continue;
        }
        int integer = f[0] == '%' && f[1] == 'd';
        if (integer)
            while (is_space(*text)) text++;
        if (*text == 0 && stored == 0) {
            stored = -1;
            break;
        }
        if (!integer) {
            if (*text != *f) break;
            text++;
            continue;
        }
        f++;
        const char *digits = text + (*text == '-' || *text == '+');
        if (!is_digit(*digits)) break;
        int magnitude = parse_int_from(&digits);  /* from the first digit: digits only */
        *__builtin_va_arg(arguments, int *) = *text == '-' ? -magnitude : magnitude;
        stored++;
        text = digits;
    }
    __builtin_va_end(arguments);
    return stored;
}

#ifdef __wasm__
/* memcpy, memset, memmove, memcmp: clang calls them by name for struct
 * copies and large initialisers, even with -fno-builtin, so a program that
 * copies a big struct needs them to link (a native build has the C
 * library's). Byte by byte (exact for any alignment and overlap);
 * -fno-builtin keeps clang from turning these loops back into calls of
 * themselves. */
void *memcpy(void *destination, const void *source, __SIZE_TYPE__ count) {
    unsigned char *to = destination;
    const unsigned char *from = source;
    for (unsigned char *end = to + count; to != end; to++, from++) *to = *from;
    return destination;
}

void *memset(void *destination, int byte, __SIZE_TYPE__ count) {
    unsigned char *to = destination;
    for (unsigned char *end = to + count; to != end; to++) *to = (unsigned char)byte;
    return destination;
}

/* Copies forward when the destination lies below the source, else backward,
 * so overlapping bytes are read before they are overwritten. */
void *memmove(void *destination, const void *source, __SIZE_TYPE__ count) {
    unsigned char *to = destination;
    const unsigned char *from = source;
    if (to < from) return memcpy(destination, source, count);
    while (count != 0) {
        count--;
        to[count] = from[count];
    }
    return destination;
}

/* The difference of the first differing bytes (as unsigned char), or 0. */
int memcmp(const void *left, const void *right, __SIZE_TYPE__ count) {
    const unsigned char *a = left, *b = right;
    for (const unsigned char *end = a + count; a != end; a++, b++)
        if (*a != *b) return *a - *b;
    return 0;
}

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
