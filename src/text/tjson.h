/* A small, fast JSON DOM for tokenizer.json: one arena, strings unescaped in place, positions kept
 * for error messages. Internal to src/text (jansson is ~10x slower on a 10 MB vocabulary). */
#ifndef KD_TJSON_H
#define KD_TJSON_H

#include <stddef.h>
#include <stdint.h>

enum { TJ_NULL, TJ_FALSE, TJ_TRUE, TJ_NUM, TJ_STR, TJ_ARR, TJ_OBJ };

typedef struct tj_val {
    uint8_t type;
    uint32_t len;  /* string bytes, array items, object pairs */
    uint32_t pos;  /* byte offset in the document, for messages */
    union {
        double num;
        const char *str;        /* NUL-terminated, may contain NULs (use len) */
        struct tj_val *items;   /* array: len values; object: 2*len values, key then value */
    } u;
} tj_val;

typedef struct tj_doc {
    char *buf;        /* the document, modified in place */
    size_t n;
    tj_val *root;
    tj_val **blocks;  /* arena blocks */
    size_t nblocks;
} tj_doc;

/* Parse (takes ownership of buf, which must hold n bytes plus one spare). On error returns -1 and
 * writes "line L column C (byte B): what" into msg. */
int tj_parse(tj_doc *doc, char *buf, size_t n, char *msg, size_t msgcap);
void tj_free(tj_doc *doc);
const tj_val *tj_get(const tj_val *obj, const char *key);
/* line/column (1-based) of a byte offset */
void tj_linecol(const tj_doc *doc, size_t pos, size_t *line, size_t *col);

#endif
