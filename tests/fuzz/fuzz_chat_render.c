/* libFuzzer target: arbitrary bytes as a JSON conversation {"messages", "tools"} for
 * kd_chat_render_json; checks the spans stay inside the text. */
#include <stdint.h>
#include <stdlib.h>

#include "kdstep/chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_t *conv = json_loadb((const char *)data, size, 0, NULL);
    if (!conv) return 0;
    kd_chat_options o = {.add_generation_prompt = (int)(size & 1), .disable_thinking = (int)((size >> 1) & 1)};
    kd_chat_result r;
    kd_error e;
    if (kd_chat_render_json(json_object_get(conv, "messages"), json_object_get(conv, "tools"), &o, &r, &e) == KD_OK) {
        for (int i = 0; i < r.n_messages; i++)
            if (r.message_spans[i].end > r.len || r.content_spans[i].end > r.len ||
                r.content_spans[i].start > r.content_spans[i].end)
                abort();
        for (int i = 0; i < r.n_tool_calls; i++)
            if (r.tool_call_spans[i].end > r.len) abort();
        kd_chat_render_free(&r);
    }
    json_decref(conv);
    return 0;
}
