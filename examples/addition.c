/* addition: adds two non-negative integers of any length, digit by digit,
 * the way it is done on paper.
 *
 * Input:  two decimal numbers separated by spaces
 *         (default "12345678901234567890 98765432109876543210").
 * Output: their sum and a newline ("111111111011111111100").
 *
 * Only additions and comparisons: a column whose digit sum reaches 10 keeps
 * the sum minus 10 and carries 1 into the next column.
 */

static const char *skip_spaces(const char *p) {
    while (is_space(*p)) p++;
    return p;
}

static const char *skip_digits(const char *p) {
    while (is_digit(*p)) p++;
    return p;
}

void compute(const char *input) {
    const char *text = input;
    if (*text == 0) text = "12345678901234567890 98765432109876543210";

    /* Each number is the digit run [first, end). */
    const char *a_first = skip_spaces(text);
    const char *a_end = skip_digits(a_first);
    const char *b_first = skip_spaces(a_end);
    const char *b_end = skip_digits(b_first);

    /* The sum's digits, least significant first, go to the unused memory
     * just after the input string (so the numbers may be of any length). */
    char *sum_first = (char *)input + str_len(input) + 1;
    char *sum_end = sum_first;

    /* Column k (k = 0 for the units) holds digit a_end[-1-k] of a, or 0 when
     * a has no digit there; the same for b. */
    int a_length = (int)(a_end - a_first);
    int b_length = (int)(b_end - b_first);
    int columns = a_length > b_length ? a_length : b_length;
    int carry = 0;
    for (int k = 0; k < columns; k++) {
        int column = carry;
        if (k < a_length) column += a_end[-1 - k] - '0';
        if (k < b_length) column += b_end[-1 - k] - '0';
        carry = 0;
        if (column >= 10) {
            column -= 10;
            carry = 1;
        }
        *sum_end = (char)('0' + column);
        sum_end++;
    }
    if (carry) {
        *sum_end = '1';
        sum_end++;
    }

    /* Drop leading zeros (the most significant digits are at the end),
     * but keep one digit: 0 + 0 is "0". */
    while (sum_end - sum_first > 1 && sum_end[-1] == '0') sum_end--;
    if (sum_end == sum_first) putchar('0');
    while (sum_end != sum_first) {
        sum_end--;
        putchar(*sum_end);
    }
    putchar('\n');
}
