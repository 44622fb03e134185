/* sha256: the SHA-256 hash of the input (FIPS 180-4).
 *
 * Input:  any string (default "abc").
 * Output: its SHA-256 as 64 hex digits and a newline (for "abc":
 *         ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad).
 */

/* The first 32 bits of the fractional parts of the cube roots of the first
 * 64 primes. */
static const unsigned ROUND_CONSTANTS[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* The first 32 bits of the fractional parts of the square roots of the
 * first 8 primes. */
static const unsigned INITIAL_STATE[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static unsigned rotate_right(unsigned x, int n) {
    return (x >> n) | (x << (32 - n));
}

/* Mixes one 64-byte block into the 8-word state `in`, giving `out` (which may be `in`). */
static void compress(const unsigned in[8], const unsigned char block[64], unsigned out[8]) {
    unsigned w[64];
    for (int i = 0; i < 16; i++) {
        const unsigned char *p = block + 4 * i;     /* big-endian words */
        w[i] = (unsigned)p[0] << 24 | (unsigned)p[1] << 16 | (unsigned)p[2] << 8 | p[3];
    }
    for (int i = 16; i < 64; i++) {
        unsigned s0 = rotate_right(w[i - 15], 7) ^ rotate_right(w[i - 15], 18) ^ (w[i - 15] >> 3);
        unsigned s1 = rotate_right(w[i - 2], 17) ^ rotate_right(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    unsigned a = in[0], b = in[1], c = in[2], d = in[3];
    unsigned e = in[4], f = in[5], g = in[6], h = in[7];
    for (int i = 0; i < 64; i++) {
        unsigned s1 = rotate_right(e, 6) ^ rotate_right(e, 11) ^ rotate_right(e, 25);
        unsigned choice = (e & f) ^ (~e & g);
        unsigned t1 = h + s1 + choice + ROUND_CONSTANTS[i] + w[i];
        unsigned s0 = rotate_right(a, 2) ^ rotate_right(a, 13) ^ rotate_right(a, 22);
        unsigned majority = (a & b) ^ (a & c) ^ (b & c);
        unsigned t2 = s0 + majority;
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    out[0] = in[0] + a;
    out[1] = in[1] + b;
    out[2] = in[2] + c;
    out[3] = in[3] + d;
    out[4] = in[4] + e;
    out[5] = in[5] + f;
    out[6] = in[6] + g;
    out[7] = in[7] + h;
}

/* The message is padded with a 1 bit, zeros, and its length in bits (64 bits,
 * big-endian), to a whole number of blocks. */
static void sha256(const unsigned char *message, int length, unsigned state[8]) {
    /* (The first block reads INITIAL_STATE itself: a copy of it into state
     * would be compiled to 8-byte stores, i64 instructions.) */
    const unsigned *from = INITIAL_STATE;
    int whole = length - length % 64;
    for (int start = 0; start < whole; start += 64) {
        compress(from, message + start, state);
        from = state;
    }
    unsigned char last[128];     /* the rest of the message and the padding: 1 or 2 blocks */
    int rest = length - whole;
    int end = rest < 56 ? 64 : 128;
    /* One loop writes message bytes, the 1 bit and the zeros (a loop of zeros by
     * itself would also be compiled to 8-byte stores). */
    for (int i = 0; i < end - 4; i++) {
        if (i < rest) last[i] = message[whole + i];
        else if (i == rest) last[i] = 0x80;
        else last[i] = 0;
    }
    unsigned bits = (unsigned)length * 8;   /* messages under 512 MiB: the top 32 bits are 0 */
    for (int i = 0; i < 4; i++) last[end - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (int start = 0; start < end; start += 64) {
        compress(from, last + start, state);
        from = state;
    }
}

void compute(const char *input) {
    const char *text = input;
    if (*text == 0) text = "abc";
    unsigned state[8];
    sha256((const unsigned char *)text, str_len(text), state);
    for (int i = 0; i < 8; i++) print_hex(state[i]);
    putchar('\n');
}
