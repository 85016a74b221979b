/* CUnit suite: the growable string buffer (src/core/sbuf.c). Growth is checked against the C
 * library's own snprintf of the same text; the bound and the failure paths (KD_SBUF_MAX passed, a failed
 * allocation, an output error of the format) must leave the buffer out of memory, add nothing more,
 * and make kd_sbuf_take return NULL. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <wchar.h>

#include "kdstep/sbuf.h"
#include "testutil.h"

/* Appends of every size from 0 to 600 bytes, by all three calls, equal one snprintf of the whole; the
 * capacity is a power of two times 256 holding the text and its NUL. */
static void test_growth(void) {
    kd_sbuf b = {0};
    CU_ASSERT_PTR_NULL(b.data);
    size_t want_cap = 1 << 22;
    char *want = malloc(want_cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(want);
    size_t wl = 0;
    char chunk[601];
    for (int n = 0; n <= 600; n++) {
        for (int i = 0; i < n; i++) chunk[i] = (char)('a' + (n + i) % 26);
        chunk[n] = 0;
        switch (n % 3) {
        case 0: kd_sbuf_add(&b, chunk, (size_t)n); break;
        case 1: kd_sbuf_puts(&b, chunk); break;
        default: kd_sbuf_printf(&b, "%s", chunk); break;
        }
        wl += (size_t)snprintf(want + wl, want_cap - wl, "%s", chunk);
        CU_ASSERT_EQUAL_FATAL(b.len, wl);
        CU_ASSERT_FATAL(b.cap > b.len);
        CU_ASSERT_EQUAL(b.data[b.len], 0);
        size_t c = b.cap;
        while (c > 256 && c % 2 == 0) c /= 2;
        CU_ASSERT_EQUAL(c, 256);
    }
    CU_ASSERT_FALSE(b.oom);
    CU_ASSERT_EQUAL(memcmp(b.data, want, wl), 0);
    /* printf output longer than its 1024-byte stack buffer, with numbers in it */
    kd_sbuf_printf(&b, "[%d|%*s|%.3f]", -42, 3000, "x", 2.5);
    wl += (size_t)snprintf(want + wl, want_cap - wl, "[%d|%*s|%.3f]", -42, 3000, "x", 2.5);
    CU_ASSERT_EQUAL(b.len, wl);
    CU_ASSERT_EQUAL(memcmp(b.data, want, wl + 1), 0);
    /* bytes with NULs inside are kept as they are */
    kd_sbuf_add(&b, "a\0b", 3);
    CU_ASSERT_EQUAL(b.len, wl + 3);
    CU_ASSERT_EQUAL(memcmp(b.data + wl, "a\0b", 4), 0);
    char *s = kd_sbuf_take(&b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(memcmp(s, want, wl), 0);
    CU_ASSERT_PTR_NULL(b.data);
    CU_ASSERT_EQUAL(b.len, 0);
    CU_ASSERT_EQUAL(b.cap, 0);
    free(s);
    /* the buffer is reusable after a take */
    kd_sbuf_puts(&b, "again");
    s = kd_sbuf_take(&b);
    CU_ASSERT_STRING_EQUAL(s, "again");
    free(s);
    free(want);
}

/* Nothing added: take gives "" (a string to free), and an empty add makes data "" */
static void test_empty(void) {
    kd_sbuf b = {0};
    char *s = kd_sbuf_take(&b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_STRING_EQUAL(s, "");
    free(s);
    kd_sbuf_add(&b, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b.data);
    CU_ASSERT_STRING_EQUAL(b.data, "");
    CU_ASSERT_EQUAL(b.len, 0);
    kd_sbuf_printf(&b, "%s", "");
    CU_ASSERT_EQUAL(b.len, 0);
    CU_ASSERT_FALSE(b.oom);
    kd_sbuf_free(&b);
    CU_ASSERT_PTR_NULL(b.data);
    kd_sbuf_free(&b); /* twice is harmless */
}

/* The bound: a length past KD_SBUF_MAX is refused before any allocation (len + n + 1 cannot
 * overflow), marks the buffer out of memory, adds nothing more, and take gives NULL. */
static void test_bounds(void) {
    kd_sbuf b = {0};
    kd_sbuf_puts(&b, "abc");
    kd_sbuf_add(&b, "x", KD_SBUF_MAX - 2); /* 3 + (max - 2) = max + 1 */
    CU_ASSERT_TRUE(b.oom);
    CU_ASSERT_EQUAL(b.len, 3);
    CU_ASSERT_EQUAL(b.cap, 256);
    CU_ASSERT_STRING_EQUAL(b.data, "abc");
    kd_sbuf_puts(&b, "d"); /* out of memory: nothing more, not even a small add */
    kd_sbuf_add(&b, "", 0);
    kd_sbuf_printf(&b, "%d", 1);
    CU_ASSERT_EQUAL(b.len, 3);
    CU_ASSERT_TRUE(b.oom);
    CU_ASSERT_PTR_NULL(kd_sbuf_take(&b));
    CU_ASSERT_PTR_NULL(b.data);
    CU_ASSERT_FALSE(b.oom); /* take freed and reset it */
    kd_sbuf_puts(&b, "fresh");
    CU_ASSERT_STRING_EQUAL(b.data, "fresh");
    kd_sbuf_free(&b);

    const size_t huge[] = {SIZE_MAX, SIZE_MAX - 1, KD_SBUF_MAX + 1};
    for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
        kd_sbuf e = {0};
        kd_sbuf_add(&e, "x", huge[i]);
        CU_ASSERT_TRUE(e.oom);
        CU_ASSERT_PTR_NULL(e.data);
        CU_ASSERT_EQUAL(e.len, 0);
        kd_sbuf_free(&e);
    }
}

/* A format the C library cannot write (a wide character with no multibyte form in the "C" locale)
 * is an output error: the text would be incomplete, so the buffer is out of memory. */
static void test_format_error(void) {
    char probe[8];
    if (snprintf(probe, sizeof probe, "%lc", (wint_t)0x20AC) >= 0) {
        kd_test_skip("this C library writes U+20AC in the C locale: no output error to provoke");
        return;
    }
    kd_sbuf b = {0};
    kd_sbuf_puts(&b, "ok");
    kd_sbuf_printf(&b, "%lc", (wint_t)0x20AC);
    CU_ASSERT_TRUE(b.oom);
    CU_ASSERT_PTR_NULL(kd_sbuf_take(&b));
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KD_UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define KD_UNDER_SANITIZER 1
#endif
#endif

/* A failed allocation, for real: in a child whose address space is capped (RLIMIT_AS) just above what
 * it maps, appending 96 MiB (readable zero pages mapped before the cap) cannot grow the buffer, nor
 * can a printf of 96 MiB get its temporary; both leave it out of memory with the text it had. */
static void test_allocation_failure(void) {
#ifdef KD_UNDER_SANITIZER
    kd_test_skip("a sanitizer reserves address space: RLIMIT_AS cannot make one allocation fail");
    return;
#else
    const size_t big = (size_t)96 << 20;
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        const char *src = mmap(NULL, big, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (src == MAP_FAILED) _exit(10);
        kd_sbuf b = {0};
        kd_sbuf_puts(&b, "kept");
        /* the address space in use now, from /proc/self/statm (pages), plus 32 MiB */
        FILE *f = fopen("/proc/self/statm", "r");
        unsigned long pages = 0;
        if (!f || fscanf(f, "%lu", &pages) != 1) _exit(11);
        fclose(f);
        rlim_t cap = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)32 << 20);
        struct rlimit rl = {cap, cap};
        if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(12);
        kd_sbuf_add(&b, src, big);
        if (!b.oom) _exit(13);
        if (b.len != 4 || strcmp(b.data, "kept") != 0) _exit(14);
        kd_sbuf c = {0};
        kd_sbuf_printf(&c, "%*s", (int)big, "x");
        if (!c.oom || c.len != 0) _exit(15);
        if (kd_sbuf_take(&b) != NULL || b.data != NULL) _exit(16);
        kd_sbuf_free(&c);
        _exit(0);
    }
    int st = 0;
    CU_ASSERT_EQUAL_FATAL(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "\n  child: %s %d (10-12: setup, 13-16: the check that failed)\n",
                WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
#endif
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("sbuf", NULL, NULL);
    CU_add_test(s, "growth: add, puts, printf equal snprintf; capacity doubles from 256", test_growth);
    CU_add_test(s, "empty buffer, empty adds, free twice", test_empty);
    CU_add_test(s, "bounds: past KD_SBUF_MAX is refused, no overflow near SIZE_MAX", test_bounds);
    CU_add_test(s, "an output error of the format", test_format_error);
    CU_add_test(s, "a failed allocation (RLIMIT_AS in a child)", test_allocation_failure);
    return kd_test_main();
}
