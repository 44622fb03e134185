/* hello: greets the name given as input.
 *
 * Input:  a name, e.g. "Ada" (empty: "world").
 * Output: "Hello, Ada!" and a newline.
 */

void compute(const char *input) {
    const char *name = input;
    if (*name == 0) name = "world";
    print_str("Hello, ");
    print_str(name);
    print_str("!\n");
}
