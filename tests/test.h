/* Minimal test harness: each test runs in a child process (as libuv's
 * runner does), so a crash or abort fails that test alone; the runner
 * prints one line per test and the closing "N passed, N failed" line.
 *
 *   static void test_x(void) { CHECK(1 + 1 == 2); }
 *   static const test_case tests[] = {{"x", test_x}, {0}};
 *   int main(int argc, char **argv) { return test_main(argc, argv, tests); }
 *
 * `prog NAME` runs only the tests whose name contains NAME; TEST_NOFORK=1
 * runs them in-process (for a debugger). */
#ifndef DHT_TEST_H
#define DHT_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    const char *name;
    void (*fn)(void);
} test_case;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

#define CHECK_EQ(a, b)                                                                   \
    do {                                                                                 \
        long long _a = (long long)(a), _b = (long long)(b);                              \
        if (_a != _b) {                                                                  \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", __FILE__, \
                    __LINE__, #a, _a, #b, _b);                                           \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

static inline int test_main(int argc, char **argv, const test_case *tests)
{
    int passed = 0, failed = 0;
    int nofork = getenv("TEST_NOFORK") != NULL;
    for (const test_case *t = tests; t->name; t++) {
        if (argc > 1 && strstr(t->name, argv[1]) == NULL)
            continue;
        int ok;
        fflush(NULL);
        if (nofork) {
            t->fn();
            ok = 1;
        } else {
            pid_t pid = fork();
            if (pid == 0) {
                t->fn();
                fflush(NULL);
                _exit(0);
            }
            int st = 0;
            waitpid(pid, &st, 0);
            ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
            if (WIFSIGNALED(st))
                fprintf(stderr, "  (killed by signal %d)\n", WTERMSIG(st));
        }
        printf("%s %s\n", ok ? "ok  " : "FAIL", t->name);
        fflush(stdout);
        passed += ok;
        failed += !ok;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#endif
