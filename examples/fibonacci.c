/* fibonacci: prints the first n Fibonacci numbers, 0 1 1 2 3 5 ...
 *
 * Input:  n, e.g. "20" (the default); 0 <= n <= 47, so that every number
 *         fits in 32 bits (the 47th is 2971215073).
 * Output: the numbers separated by spaces, then a newline.
 *
 * Each number is the sum of the two before it.
 */

void compute(const char *input) {
    const char *text = input;
    if (*text == 0) text = "20";
    int n = parse_int(&text);
    if (n < 0 || n > 47) {
        print_str("n must be between 0 and 47\n");
        return;
    }
    unsigned current = 0;   /* F(k) */
    unsigned next = 1;      /* F(k + 1) */
    for (int k = 0; k < n; k++) {
        if (k > 0) putchar(' ');
        print_unsigned(current);
        unsigned after_next = current + next;
        current = next;
        next = after_next;
    }
    putchar('\n');
}
