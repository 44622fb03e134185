/* crc32: the CRC-32 of the input (the checksum of zip, gzip and PNG),
 * computed bit by bit.
 *
 * Input:  any string (default "The quick brown fox jumps over the lazy dog").
 * Output: its CRC-32 as 8 hex digits and a newline (414fa339 for the default).
 */

/* CRC-32 (IEEE 802.3): the reflected polynomial 0xEDB88320, initial value and
 * final xor 0xFFFFFFFF. Each bit of the message shifts the register right;
 * when a 1 falls out, the polynomial is xored in. */
static unsigned crc32(const unsigned char *data, int length) {
    unsigned crc = 0xFFFFFFFFu;
    for (int i = 0; i < length; i++) {
        crc ^= data[i];
        for (int bit = 0; bit < 8; bit++) {
            if (crc & 1) crc = (crc >> 1) ^ 0xEDB88320u;
            else crc = crc >> 1;
        }
    }
    return ~crc;
}

void compute(const char *input) {
    const char *text = input;
    if (*text == 0) text = "The quick brown fox jumps over the lazy dog";
    print_hex(crc32((const unsigned char *)text, str_len(text)));
    putchar('\n');
}
