/* sudoku: solves a Sudoku by backtracking search with constraint propagation
 * (Knuth's Algorithm X on "dancing links").
 *
 * Input:  the 81 cells row by row, a digit 1-9 or 0 (or '.') for a blank;
 *         spaces and newlines are skipped. Default: Arto Inkala's puzzle
 *         800000000003600000070090200050007000000045700000100030001000068008500010090000400
 * Output: the solved grid, 9 lines of 9 digits (or "no solution",
 *         or "need 81 cells").
 *
 * A Sudoku is an exact cover problem. There are 324 constraints, each to be
 * met exactly once: every cell holds a digit (81), every row, column and box
 * holds every digit (3 x 81). There are 729 options "digit d in cell x",
 * each meeting 4 constraints. The search picks the constraint with the fewest
 * options left: a constraint with one option is a forced move (a cell with
 * one possible digit, or a digit with one possible place in a unit), one
 * with none ends the branch at once. Choosing an option removes every option
 * that clashes with it; backtracking puts them back. The givens are applied
 * while building: only the constraints they leave open, and the options that
 * clash with none of them, enter the matrix.
 *
 * Two pieces of bookkeeping keep the search cheap: the number of constraints
 * left with no option (a dead end is noticed as soon as it happens), and a
 * to-do list of constraints left with exactly one option (a forced move is
 * found without scanning all 324 constraints).
 *
 * On Inkala's puzzle: about 1,400 search steps, 90 of them guesses.
 *
 * The matrix is a web of doubly linked lists: each column (constraint) is a
 * circular list of its options' nodes, each option a circular row of its 4
 * nodes. Removing a node from its column list and restoring it later take
 * two pointer writes each ("dancing links").
 */

typedef struct Node Node;
struct Node {
    Node *left, *right;   /* neighbours in the row (or in the header list) */
    Node *up, *down;      /* neighbours in the column */
    Node *column;         /* the column header of this node */
    int size;             /* column headers: options left in the column */
    int cell, digit;      /* option nodes: the option "digit in cell" */
};

enum {
    CELLS = 81,
    CONSTRAINTS = 4 * CELLS,       /* cell, row-digit, column-digit, box-digit */
    OPTIONS = 9 * CELLS,           /* one per (cell, digit) */
};

static Node root;                       /* the header list starts here */
static Node headers[CONSTRAINTS];       /* one per column, in the order above */
static Node option_nodes[4 * OPTIONS];  /* 4 per option, option by option */
static unsigned char grid[CELLS];       /* the answer, a digit per cell */

static int empty_columns;               /* columns left with no option */
/* Columns that were left with one option, most recent on top. Only a hint:
 * an entry may be stale (the column was covered since, or regained options),
 * so it is checked when taken; slots may be reused after backtracking. Along
 * one search path a column reaches one option at most once, so 324 entries
 * suffice. */
static Node *forced[CONSTRAINTS];
static Node **forced_top = forced;

/* Appends node at the bottom of column's list. */
static void append_to_column(Node *node, Node *column) {
    node->column = column;
    node->down = column;
    node->up = column->up;
    column->up->down = node;
    column->up = node;
    column->size++;
}

/* Links the 4 nodes of the option "digit in cell" into a circular row and
 * appends each to its column. */
static void add_option(Node *nodes, int cell, int digit, Node *cell_column,
                       Node *row_column, Node *column_column, Node *box_column) {
    append_to_column(nodes + 0, cell_column);
    append_to_column(nodes + 1, row_column);
    append_to_column(nodes + 2, column_column);
    append_to_column(nodes + 3, box_column);
    nodes[0].left = nodes + 3;
    nodes[0].right = nodes + 1;
    nodes[1].left = nodes + 0;
    nodes[1].right = nodes + 2;
    nodes[2].left = nodes + 1;
    nodes[2].right = nodes + 3;
    nodes[3].left = nodes + 2;
    nodes[3].right = nodes + 0;
    /* choose_option reads the option from whichever node it is given */
    for (Node *node = nodes; node != nodes + 4; node++) {
        node->cell = cell;
        node->digit = digit;
    }
}

enum { MET = -1 };   /* the size of a column already met by a given digit */

/* Links the columns that no given meets into the header list, in the order
 * of `headers`. (The order decides ties between columns with equally few
 * options; with the cell columns first, ties go to "which digit goes in this
 * cell", which did better on a few hard puzzles than the other orders.) */
static void add_columns(void) {
    for (Node *column = headers; column != headers + CONSTRAINTS; column++) {
        if (column->size == MET) continue;
        column->left = root.left;
        column->right = &root;
        root.left->right = column;
        root.left = column;
    }
}

/* Visits the 729 options (cell x, digit d). With adding = 0, marks the 4
 * columns of each given digit as MET (returns 0 if two givens clash); with
 * adding = 1, adds the options of the blank cells that meet no MET column. */
static int visit_options(int adding) {
    /* Columns of cell x = (row r, column c, box b), digit d (all from 0):
     * headers[x], [81 + 9r + d], [162 + 9c + d], [243 + 9b + d]. */
    Node *nodes = option_nodes;
    for (int cell = 0; cell < CELLS; cell++) {
        int r = cell / 9, c = cell % 9, b = r / 3 * 3 + c / 3;
        Node *cell_column = headers + cell;
        Node *row_first = headers + CELLS + 9 * r;
        Node *column_first = headers + 2 * CELLS + 9 * c;
        Node *box_first = headers + 3 * CELLS + 9 * b;
        int given = grid[cell];    /* 0 for a blank */
        for (int d = 0; d < 9; d++) {
            Node *row_column = row_first + d;
            Node *column_column = column_first + d;
            Node *box_column = box_first + d;
            if (!adding && given == d + 1) {
                if (row_column->size == MET || column_column->size == MET ||
                    box_column->size == MET) {
                    return 0;
                }
                cell_column->size = MET;
                row_column->size = MET;
                column_column->size = MET;
                box_column->size = MET;
            }
            if (adding && given == 0 && row_column->size != MET &&
                column_column->size != MET && box_column->size != MET) {
                add_option(nodes, cell, d + 1, cell_column, row_column,
                           column_column, box_column);
                nodes += 4;
            }
        }
    }
    return 1;
}

/* Builds the matrix of the puzzle in grid: the columns no given meets, the
 * options of the blank cells that clash with no given. Returns 0 if two
 * givens clash. */
static int build_matrix(void) {
    for (Node *column = headers; column != headers + CONSTRAINTS; column++) {
        column->up = column->down = column->column = column;
    }
    if (!visit_options(0)) return 0;
    root.left = root.right = &root;
    add_columns();
    visit_options(1);
    /* Columns without options end the search at once; columns with one
     * option are forced moves. */
    for (Node *column = root.right; column != &root; column = column->right) {
        if (column->size == 0) empty_columns++;
        if (column->size == 1) {
            *forced_top = column;
            forced_top++;
        }
    }
    return 1;
}

/* Removes column c from the header list, and every option in c from the
 * other columns it is in. */
static void cover(Node *c) {
    if (c->size == 0) empty_columns--;      /* c is no longer a live column */
    c->right->left = c->left;
    c->left->right = c->right;
    for (Node *option = c->down; option != c; option = option->down) {
        for (Node *node = option->right; node != option; node = node->right) {
            node->down->up = node->up;
            node->up->down = node->down;
            Node *column = node->column;
            int size = column->size - 1;
            column->size = size;
            if (size <= 1) {
                if (size == 0) {
                    empty_columns++;
                } else {
                    *forced_top = column;
                    forced_top++;
                }
            }
        }
    }
}

/* Undoes cover(c), in exactly the reverse order. (It leaves empty_columns
 * and the to-do list alone: search saves and restores them.) */
static void uncover(Node *c) {
    for (Node *option = c->up; option != c; option = option->up) {
        for (Node *node = option->left; node != option; node = node->left) {
            node->column->size++;
            node->down->up = node;
            node->up->down = node;
        }
    }
    c->right->left = c;
    c->left->right = c;
}

/* Takes the option of `node` into the solution: covers its other columns. */
static void choose_option(Node *node) {
    grid[node->cell] = (unsigned char)node->digit;
    for (Node *other = node->right; other != node; other = other->right) {
        cover(other->column);
    }
}

static void unchoose_option(Node *node) {
    for (Node *other = node->left; other != node; other = other->left) {
        uncover(other->column);
    }
}

/* The next column to branch on: a column with one option from the to-do
 * list if there is one, else the first column with at most 2 options, else
 * the column with the fewest. */
static Node *choose_column(void) {
    while (forced_top != forced) {
        forced_top--;
        Node *c = *forced_top;
        if (c->size == 1 && c->left->right == c) return c;   /* live, forced */
    }
    Node *best = root.right;
    for (Node *c = best->right; c != &root && best->size > 2; c = c->right) {
        if (c->size < best->size) best = c;
    }
    return best;
}

/* Returns 1 when every remaining constraint is met (the answer is in grid),
 * 0 when no choice of options works (the matrix is left as it was). */
static int search(void) {
    if (empty_columns != 0) return 0;
    if (root.right == &root) return 1;

    int saved_empty_columns = empty_columns;
    Node *best = choose_column();
    Node **saved_top = forced_top;
    cover(best);
    int empty_columns_after_cover = empty_columns;
    for (Node *option = best->down; option != best; option = option->down) {
        choose_option(option);
        if (search()) return 1;
        unchoose_option(option);
        empty_columns = empty_columns_after_cover;
        forced_top = saved_top;
    }
    uncover(best);
    empty_columns = saved_empty_columns;
    return 0;
}

void compute(const char *input) {
    const char *text = input;
    if (*text == 0) {
        text = "800000000003600000070090200050007000000045700000100030001000068008500010090000400";
    }

    /* Read the 81 cells into grid. */
    int cells = 0;
    int length = str_len(text);
    for (int k = 0; k < length; k++) {
        int c = text[k];
        if (is_space(c)) continue;
        if (c == '.') c = '0';
        if (cells == CELLS || !is_digit(c)) {
            cells = -1;
            break;
        }
        grid[cells] = (unsigned char)(c - '0');
        cells++;
    }
    if (cells != CELLS) {
        print_str("need 81 cells\n");
        return;
    }
    if (!build_matrix() || !search()) {
        print_str("no solution\n");
        return;
    }
    for (int row = 0; row < 9; row++) {
        for (int column = 0; column < 9; column++) putchar('0' + grid[9 * row + column]);
        putchar('\n');
    }
}
