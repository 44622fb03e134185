/* hungarian: minimum-cost perfect matching (the assignment problem) by the
 * Hungarian algorithm, O(n^3) version with potentials.
 *
 * Input:  n, then the n x n costs row by row (row = worker, column = job),
 *         1 <= n <= 16, |cost| < 10^6. Default: a 10 x 10 matrix (below).
 * Output: "assignment:" and the job of each worker (columns from 0),
 *         then "cost:" and the total, e.g. for the default
 *         assignment: 8 5 2 3 0 4 1 9 6 7
 *         cost: 206
 *
 * The rows are added one at a time. Each time, a shortest augmenting path
 * from the new row is grown column by column (Dijkstra-like, on reduced
 * costs cost - row potential - column potential, which stay >= 0), then the
 * matching is flipped along it. Potentials make each step O(n), each row
 * O(n^2), the whole O(n^3).
 *
 * Rows and columns are structs reached through pointers, and loops walk
 * them until a sentinel entry.
 */

enum {
    MAX_N = 16,
    INFINITE = 1000000000,       /* larger than any reduced cost */
};

typedef struct Row Row;
typedef struct Column Column;

struct Row {
    int number;            /* 1..n; 0 marks the end of the rows */
    int potential;
    const int *costs;      /* the row's costs, one per column, in order */
};

struct Column {
    int number;            /* 0 for the start column (see below), 1..n, then -1 */
    int potential;
    Row *row;              /* the row matched to this column, or 0 */
    int min_slack;         /* smallest reduced cost into this column so far */
    Column *previous;      /* the column before it on that cheapest path */
    int visited;           /* already on the tree of the current search */
};

static int costs[MAX_N * MAX_N];
static Row rows[MAX_N + 1];          /* rows[0..n-1], then a sentinel */
/* columns[0] is a virtual start column, matched to the row being added;
 * the real columns are columns[1..n], then a sentinel. */
static Column columns[MAX_N + 2];

static const char DEFAULT_INPUT[] =
    "10\n"
    "61 58 35 86 32 39 41 27 21 42\n"
    "59 77 97 99 78 21 89 72 35 63\n"
    "88 85 37 57 59 97 37 29 69 94\n"
    "32 82 53 20 77 96 21 70 50 61\n"
    "15 44 81 10 64 36 56 78 20 69\n"
    "76 35 87 69 16 55 26 37 30 66\n"
    "86 32 74 94 32 14 24 12 31 70\n"
    "97 63 20 64 90 21 28 49 89 10\n"
    "58 52 27 76 61 35 17 91 37 66\n"
    "42 79 61 26 55 98 70 17 26 86\n";

/* Matches `row` too, re-matching earlier rows along the cheapest path. */
static void add_row(Row *row) {
    Column *start = columns;
    start->row = row;
    for (Column *c = columns; c->number >= 0; c++) {
        c->min_slack = INFINITE;
        c->visited = 0;
    }

    /* Grow the tree of cheapest paths until it reaches a free column. */
    Column *current = start;
    do {
        current->visited = 1;
        Row *from = current->row;
        int delta = INFINITE;
        Column *next = 0;
        const int *cost = from->costs;
        for (Column *c = columns + 1; c->number > 0; c++, cost++) {
            if (!c->visited) {
                int reduced = *cost - from->potential - c->potential;
                if (reduced < c->min_slack) {
                    c->min_slack = reduced;
                    c->previous = current;
                }
                if (c->min_slack < delta) {
                    delta = c->min_slack;
                    next = c;
                }
            }
        }
        /* Shift the potentials by delta: reduced costs on the tree stay 0,
         * and `next` becomes reachable at reduced cost 0. */
        for (Column *c = columns; c->number >= 0; c++) {
            if (c->visited) {
                c->row->potential += delta;
                c->potential -= delta;
            } else {
                c->min_slack -= delta;
            }
        }
        current = next;
    } while (current->row != 0);

    /* Flip the matching along the path back to the start column. */
    do {
        Column *previous = current->previous;
        current->row = previous->row;
        current = previous;
    } while (current != start);
}

void compute(const char *input) {
    const char *text = input;
    if (*text == 0) text = DEFAULT_INPUT;
    int n = parse_int(&text);
    if (n < 1 || n > MAX_N) {
        print_str("n must be between 1 and 16\n");
        return;
    }

    /* Read the costs; number the rows and columns; place the sentinels. */
    int *cost = costs;
    Row *row = rows;
    Column *column = columns + 1;
    for (int i = 1; i <= n; i++) {
        row->number = i;
        row->costs = cost;
        for (int j = 0; j < n; j++) {
            *cost = parse_int(&text);
            cost++;
        }
        row++;
        column->number = i;
        column++;
    }
    row->number = 0;
    column->number = -1;

    for (Row *r = rows; r->number != 0; r++) add_row(r);

    /* Print each row's column, adding up the costs of the matched pairs. */
    int total = 0;
    print_str("assignment:");
    for (Row *r = rows; r->number != 0; r++) {
        const int *c_cost = r->costs;
        for (Column *c = columns + 1; c->number > 0; c++, c_cost++) {
            if (c->row == r) {
                putchar(' ');
                print_int(c->number - 1);
                total += *c_cost;
            }
        }
    }
    print_str("\ncost: ");
    print_int(total);
    putchar('\n');
}
