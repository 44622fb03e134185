/* collatz: prints the Collatz sequence of n (n -> n / 2 if n is even,
 * n -> 3n + 1 if n is odd, until 1) and its number of steps.
 *
 * Input:  a positive decimal integer of any length, e.g. "27" (the default).
 * Output: the sequence separated by spaces, a newline, then "111 steps"
 *         and a newline (for 27: 27 82 41 124 ... 4 2 1).
 *
 * n is kept as a row of decimal digits, so that it may have any length:
 * halving and 3n + 1 are done digit by digit, as on paper, and printing
 * needs no conversion.
 */

/* n has `length` digits: digits[0] is the units digit, digits[length - 1]
 * the leading digit (never 0). */
static void print_number(const unsigned char *digits, int length) {
    for (int k = length - 1; k >= 0; k--) putchar('0' + digits[k]);
}

/* n / 2, from the leading digit down; returns the new length. */
static int halve(unsigned char *digits, int length) {
    int remainder = 0;
    for (int k = length - 1; k >= 0; k--) {
        int v = digits[k] + 10 * remainder;
        digits[k] = (unsigned char)(v / 2);
        remainder = v % 2;
    }
    if (length > 1 && digits[length - 1] == 0) length--;
    return length;
}

/* 3n + 1, from the units digit up; returns the new length. */
static int triple_plus_one(unsigned char *digits, int length) {
    int carry = 1;
    for (int k = 0; k < length; k++) {
        int v = 3 * digits[k] + carry;
        digits[k] = (unsigned char)(v % 10);
        carry = v / 10;
    }
    if (carry != 0) {
        digits[length] = (unsigned char)carry;
        length++;
    }
    return length;
}

void compute(const char *input) {
    const char *text = input;
    if (*text == 0) text = "27";
    while (is_space(*text)) text++;
    while (*text == '0') text++;             /* leading zeros */
    const char *first = text;
    while (is_digit(*text)) text++;
    int length = (int)(text - first);
    if (length == 0) {
        print_str("n must be a positive integer\n");
        return;
    }

    /* The digits go to the unused memory just after the input string;
     * n grows by at most one digit per step. */
    unsigned char *digits = (unsigned char *)input + str_len(input) + 1;
    for (int k = 0; k < length; k++) digits[k] = (unsigned char)(text[-1 - k] - '0');

    int steps = 0;
    print_number(digits, length);
    while (1) {
        if (length == 1 && digits[0] == 1) break;
        if (digits[0] % 2 == 1) {      /* n is odd */
            length = triple_plus_one(digits, length);
        } else {
            length = halve(digits, length);
        }
        steps++;
        putchar(' ');
        print_number(digits, length);
    }
    putchar('\n');
    print_int(steps);
    print_str(" steps\n");
}
