/* How a request talks about a tool: the words of a parameter name and the gist of a description.
 *
 * The synthesizer phrases a request for any tool from these (src/data/synth.c), and the stub
 * teacher's policy reads a request against the same schema words (src/teacher/stub_policy.c), so
 * both agree on how "startDate" or "user_id" is said without either knowing the other's gold data.
 *
 *   kd_param_words("startDate")  -> "start date"      (split at _ . - and lower-to-upper case changes)
 *   kd_param_words("user_ID")    -> "user id"
 *   kd_tool_gist("Retrieves the weather. Uses the X API.") -> "Retrieves the weather"
 *                                (first sentence, quotes and backticks replaced by ', whitespace runs
 *                                 as one space, at most KD_GIST_MAX - 1 bytes, cut at a word end)
 */
#ifndef KDSTEP_TOOLWORDS_H
#define KDSTEP_TOOLWORDS_H

#include <stddef.h>

#define KD_PARAM_WORDS_MAX 128
#define KD_GIST_MAX 240

/* The parameter name as lowercase words separated by single spaces (out holds KD_PARAM_WORDS_MAX). */
void kd_param_words(const char *name, char out[KD_PARAM_WORDS_MAX]);
/* The first sentence of a description, normalized as above (out holds KD_GIST_MAX); "" for NULL. */
void kd_tool_gist(const char *description, char out[KD_GIST_MAX]);
/* The gist turned into a clause that can follow "I want to": a leading third-person verb loses its
 * -s ("Retrieves" -> "retrieve", "Searches" -> "search", "Applies" -> "apply"), the rest is kept; a
 * gist that does not start with such a verb is returned lowercased-first ("the weather ..."), and
 * *is_verb says which. */
void kd_tool_gist_clause(const char *gist, char out[KD_GIST_MAX], int *is_verb);

#endif
