/*
 * hypergraph.h: write Hypergraph tasks in C.
 *
 * `hypergraph build` generates the bindings of your world with wit-bindgen's C generator, under
 * the fixed world name `task` (so every project sees the same names: `task.h`, `task_string_t`,
 * `task_list_u8_t`, ...), and compiles this SDK with your sources. Implement one function per
 * export of your world, named `exports_task_<export>` (see task.h after a build, in
 * target/hypergraph/stage/c-bindings/), e.g. for `export checksum: func(data: list<u8>) -> u32;`:
 *
 *     #include "hypergraph.h"
 *
 *     uint32_t exports_task_checksum(task_list_u8_t *data) {
 *         hg_info("checksumming %zu bytes", data->len);
 *         uint32_t sum = adler32(data->ptr, data->len);
 *         task_list_u8_free(data);          // arguments are yours to free
 *         return sum;
 *     }
 *
 * What this header gives, over the raw bindings:
 *   - logging: hg_log(level, fmt, ...), hg_trace/hg_debug/hg_info/hg_warn/hg_error (printf-style);
 *     printf/fprintf(stderr) work too: stdout and stderr lines become log lines (stdout is
 *     line-buffered by this SDK, so each printed line is flushed);
 *   - strings: hg_str (borrow a C string), hg_string_dup (an owned copy to return), hg_cstr (a
 *     NUL-terminated malloc'd copy of a WIT string);
 *   - context: hg_run_id, hg_task_name (malloc'd), hg_attempt;
 *   - key-value: hg_kv_get/hg_kv_set/hg_kv_delete, hg_kv_get_string/hg_kv_set_string;
 *   - outbound HTTP: hg_http_request, hg_http_get (allowlisted hosts only), hg_response_free;
 *   - workflows (worlds including hypergraph:task/workflow; HG_WORKFLOW is defined then):
 *     hg_start, hg_join, hg_call, hg_sleep_ms, hg_wait_event, with JSON text in and out
 *     (hg_json_quote builds a JSON string literal).
 *
 * Clocks and randomness need nothing from here: time(), clock_gettime() and getentropy() go through
 * WASI to the host, which journals them (seed rand() with srand(time(NULL)) or getentropy: the
 * replay sees the same values). Every run starts from a fresh instance: statics hold their initial
 * values on every run. A trap (abort(), __builtin_trap(), an out-of-bounds access) fails the run
 * with the trap in its error.
 */
#ifndef HYPERGRAPH_H
#define HYPERGRAPH_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- logging ---- */

typedef enum {
  HG_TRACE = HYPERGRAPH_TASK_LOG_LEVEL_TRACE,
  HG_DEBUG = HYPERGRAPH_TASK_LOG_LEVEL_DEBUG,
  HG_INFO = HYPERGRAPH_TASK_LOG_LEVEL_INFO,
  HG_WARN = HYPERGRAPH_TASK_LOG_LEVEL_WARN,
  HG_ERROR = HYPERGRAPH_TASK_LOG_LEVEL_ERROR,
} hg_level_t;

/* Appends one printf-formatted line to the attempt's log (`hypergraph runs logs <run>`). */
void hg_log(hg_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hg_vlog(hg_level_t level, const char *fmt, va_list args);
#define hg_trace(...) hg_log(HG_TRACE, __VA_ARGS__)
#define hg_debug(...) hg_log(HG_DEBUG, __VA_ARGS__)
#define hg_info(...) hg_log(HG_INFO, __VA_ARGS__)
#define hg_warn(...) hg_log(HG_WARN, __VA_ARGS__)
#define hg_error(...) hg_log(HG_ERROR, __VA_ARGS__)

/* ---- strings ---- */

/* A WIT string borrowing `s` (no copy): for arguments of host calls. */
task_string_t hg_str(const char *s);
/* An owned copy of `s` (malloc'd): for results returned to the host, which frees them. */
task_string_t hg_string_dup(const char *s);
/* A NUL-terminated malloc'd copy of `s`; free() it. */
char *hg_cstr(const task_string_t *s);

/* ---- context ---- */

/* The run id (a UUID) and the full task name; malloc'd, free() them. */
char *hg_run_id(void);
char *hg_task_name(void);
/* The attempt number of the current step, from 1. */
uint32_t hg_attempt(void);

/* ---- key-value storage of the deployment ---- */
/* Reads are journaled; writes are committed only with a successful attempt. */

/* True and a malloc'd copy of the value (free() it) when `key` exists. */
bool hg_kv_get(const char *key, uint8_t **value, size_t *len);
void hg_kv_set(const char *key, const uint8_t *value, size_t len);
void hg_kv_delete(const char *key);
/* The value as a NUL-terminated malloc'd string, or NULL when missing. */
char *hg_kv_get_string(const char *key);
void hg_kv_set_string(const char *key, const char *value);

/* ---- outbound HTTP (wasi:http), to the deployment's allowlisted hosts ---- */

typedef struct {
  uint16_t status;
  uint8_t *body; /* malloc'd, NUL-terminated for convenience (not counted in body_len) */
  size_t body_len;
} hg_response_t;

/*
 * Sends `method` `url` (http:// or https://) with `headers` ("name: value" strings, `header_count`
 * of them; may be NULL) and `body` (may be NULL), and reads the whole response. Returns 0 on
 * success; otherwise -1 and, when `error` is not NULL, a malloc'd message (`denied` set to true
 * when the host is not allowlisted).
 */
int hg_http_request(const char *method, const char *url, const char *const *headers,
                    size_t header_count, const uint8_t *body, size_t body_len,
                    hg_response_t *response, char **error, bool *denied);
int hg_http_get(const char *url, hg_response_t *response, char **error);
void hg_response_free(hg_response_t *response);

/* ---- JSON ---- */

/* `s` as a JSON string literal, quotes included, escaped; malloc'd. */
char *hg_json_quote(const char *s);

#ifdef HG_WORKFLOW
/* ---- workflows: children, durable sleep, events (JSON text in and out) ---- */

typedef struct {
  char *kind;    /* application, trap, timeout, memory_limit, stack_overflow, exit, host, cancelled */
  char *message;
  char *value;   /* the JSON of an application error, or NULL */
} hg_child_error_t;

/* Starts `task` with `input_json`; returns the child's index, or -1 with a malloc'd `error`. */
int64_t hg_start(const char *task, const char *input_json, char **error);
/*
 * Waits for `count` children; `outputs[i]` gets the malloc'd output JSON of child i, or NULL and
 * `errors[i]` its error (`errors` may be NULL). Returns the number of failed children.
 */
size_t hg_join(const uint32_t *children, size_t count, char **outputs, hg_child_error_t *errors);
/* Starts one child and waits: 0 and a malloc'd `output`, or -1 and `error`. */
int hg_call(const char *task, const char *input_json, char **output, hg_child_error_t *error);
void hg_child_error_free(hg_child_error_t *error);
/* Sleeps durably (no instance is held; survives restarts). */
void hg_sleep_ms(uint64_t millis);
/* The payload (malloc'd JSON) of the next event `name`, or NULL after `timeout_ms` (< 0: none). */
char *hg_wait_event(const char *name, int64_t timeout_ms);
#endif

#ifdef __cplusplus
}
#endif

#endif /* HYPERGRAPH_H */
