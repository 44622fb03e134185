/* add: the built-in demo. Adds two integers and prints the sum.
 *
 * Input:  two decimal integers separated by spaces, e.g. "3 5" (the default).
 * Output: their sum and a newline, e.g. "8".
 */

void compute(const char *input) {
    const char *text = input;
    if (*text == 0) text = "3 5";
    int a = parse_int(&text);
    int b = parse_int(&text);
    print_int(a + b);
    putchar('\n');
}
