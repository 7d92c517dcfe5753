/*
 * lincheck - check recorded key-value histories for linearizability.
 *
 *   lincheck [--budget N] [--quiet] FILE...
 *
 * All files are merged into one history (use "-" for stdin).  Prints a
 * one-line verdict; for a violation it then prints the sub-history of the
 * failing key with the fewest ops.  Exit status: 0 linearizable,
 * 1 not linearizable, 3 inconclusive (search budget exhausted),
 * 2 usage or parse error.
 */
#include "lincheck.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EXIT_LIN = 0, EXIT_VIOLATION = 1, EXIT_USAGE = 2, EXIT_INCONCL = 3 };

static void usage(FILE *out)
{
    fprintf(out,
            "usage: lincheck [--budget N] [--quiet] FILE...\n"
            "\n"
            "Check JSON Lines histories of a per-key register store for\n"
            "linearizability. All FILEs (\"-\" = stdin) are merged.\n"
            "\n"
            "  --budget N  search states per key before giving up\n"
            "              (default %u)\n"
            "  --quiet     print only the verdict line\n"
            "  --help      show this help\n"
            "\n"
            "exit status: 0 linearizable, 1 not linearizable,\n"
            "             2 usage or parse error, 3 inconclusive\n",
            (unsigned)DHT_LINCHECK_DEFAULT_BUDGET);
}

static int parse_budget(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static void print_violation(const dht_history_op *ops,
                            const dht_lincheck_result *res, int quiet)
{
    printf("NOT linearizable: key %" PRId64 " (%zu ops): %s", res->key,
           res->key_ops, res->reason);
    if (res->lin_need > 0)
        printf(" (at most %zu of %zu required ops could be ordered)",
               res->lin_best, res->lin_need);
    if (res->bad_op != SIZE_MAX)
        printf("; see op #%zu", res->bad_op);
    if (res->keys_failed > 1)
        printf("; %zu keys fail", res->keys_failed);
    printf("\n");
    if (quiet)
        return;
    printf("history of key %" PRId64 " (times in ms from its first call; "
           "# = op index in the merged input):\n", res->key);
    dht_history_print(stdout, ops, res->sub, res->nsub);
}

int main(int argc, char **argv)
{
    uint64_t budget = DHT_LINCHECK_DEFAULT_BUDGET;
    int quiet = 0, nfiles = 0, only_files = 0;
    dht_history_op *ops = NULL; /* owned here, freed before exit */
    size_t n = 0;
    char err[512];
    dht_lincheck_result res;
    int rc;

    /* Options may appear anywhere before "--"; the rest are files, which
     * are loaded after all options are known (a usage error must not wait
     * for a big file to load). */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (only_files || a[0] != '-' || a[1] == '\0') {
            nfiles++;
        } else if (strcmp(a, "--") == 0) {
            only_files = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return EXIT_LIN;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            quiet = 1;
        } else if (strcmp(a, "--budget") == 0 ||
                   strncmp(a, "--budget=", 9) == 0) {
            const char *v = a[8] == '=' ? a + 9
                                        : (i + 1 < argc ? argv[++i] : NULL);

            if (parse_budget(v, &budget) < 0) {
                fprintf(stderr,
                        "lincheck: --budget needs a positive integer\n");
                return EXIT_USAGE;
            }
        } else {
            fprintf(stderr, "lincheck: unknown option '%s'\n", a);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (nfiles == 0) {
        usage(stderr);
        return EXIT_USAGE;
    }
    only_files = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (!only_files && a[0] == '-' && a[1] != '\0') {
            if (strcmp(a, "--") == 0)
                only_files = 1;
            else if (strcmp(a, "--budget") == 0)
                i++; /* skip its value */
            continue;
        }
        if (dht_history_load(a, &ops, &n, err, sizeof err) < 0) {
            fprintf(stderr, "lincheck: %s\n", err);
            free(ops);
            return EXIT_USAGE;
        }
    }

    rc = dht_lincheck_budget(ops, n, budget, &res);
    if (rc == DHT_LIN_OK) {
        printf("linearizable: %zu ops, %zu keys\n", n, res.keys_checked);
    } else if (rc == DHT_LIN_VIOLATION) {
        print_violation(ops, &res, quiet);
    } else {
        printf("INCONCLUSIVE: key %" PRId64 " (%zu ops): %s", res.key,
               res.key_ops, res.reason ? res.reason : "unknown");
        if (rc == DHT_LIN_INCONCLUSIVE)
            printf(" (budget %" PRIu64 " states per key, %zu keys affected)",
                   res.budget, res.keys_inconclusive);
        printf("; %zu ops, %zu keys\n", n, res.keys_checked);
        rc = DHT_LIN_INCONCLUSIVE;
    }
    dht_lincheck_result_free(&res);
    free(ops);
    return rc;
}
