/* hypergraph.c: the helpers declared in hypergraph.h, over the wit-bindgen bindings (task.h). */
#include "hypergraph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* stdout and stderr become log lines; a task's instance never exits, so flush every line. */
__attribute__((constructor)) static void hg_line_buffered(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  setvbuf(stderr, NULL, _IONBF, 0);
}

static char *hg_strndup(const uint8_t *ptr, size_t len) {
  char *out = malloc(len + 1);
  if (!out) abort();
  if (len) memcpy(out, ptr, len);
  out[len] = '\0';
  return out;
}

/* ---- logging ---- */

void hg_vlog(hg_level_t level, const char *fmt, va_list args) {
  char stack[512];
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(stack, sizeof stack, fmt, copy);
  va_end(copy);
  if (n < 0) return;
  char *text = stack;
  if ((size_t)n >= sizeof stack) {
    text = malloc((size_t)n + 1);
    if (!text) abort();
    vsnprintf(text, (size_t)n + 1, fmt, args);
  }
  task_string_t message = {(uint8_t *)text, (size_t)n};
  hypergraph_task_log_log((hypergraph_task_log_level_t)level, &message);
  if (text != stack) free(text);
}

void hg_log(hg_level_t level, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  hg_vlog(level, fmt, args);
  va_end(args);
}

/* ---- strings ---- */

task_string_t hg_str(const char *s) {
  task_string_t out = {(uint8_t *)s, strlen(s)};
  return out;
}

task_string_t hg_string_dup(const char *s) {
  task_string_t out;
  task_string_dup(&out, s);
  return out;
}

char *hg_cstr(const task_string_t *s) { return hg_strndup(s->ptr, s->len); }

/* ---- context ---- */

char *hg_run_id(void) {
  task_string_t id;
  hypergraph_task_context_run_id(&id);
  char *out = hg_cstr(&id);
  task_string_free(&id);
  return out;
}

char *hg_task_name(void) {
  task_string_t name;
  hypergraph_task_context_task_name(&name);
  char *out = hg_cstr(&name);
  task_string_free(&name);
  return out;
}

uint32_t hg_attempt(void) { return hypergraph_task_context_attempt(); }

/* ---- key-value ---- */

bool hg_kv_get(const char *key, uint8_t **value, size_t *len) {
  task_string_t k = hg_str(key);
  task_list_u8_t got;
  if (!hypergraph_task_kv_get(&k, &got)) return false;
  *value = (uint8_t *)hg_strndup(got.ptr, got.len);
  *len = got.len;
  task_list_u8_free(&got);
  return true;
}

void hg_kv_set(const char *key, const uint8_t *value, size_t len) {
  task_string_t k = hg_str(key);
  task_list_u8_t v = {(uint8_t *)value, len};
  hypergraph_task_kv_set(&k, &v);
}

void hg_kv_delete(const char *key) {
  task_string_t k = hg_str(key);
  hypergraph_task_kv_delete(&k);
}

char *hg_kv_get_string(const char *key) {
  uint8_t *value;
  size_t len;
  if (!hg_kv_get(key, &value, &len)) return NULL;
  return (char *)value; /* hg_kv_get NUL-terminates its copy */
}

void hg_kv_set_string(const char *key, const char *value) {
  hg_kv_set(key, (const uint8_t *)value, strlen(value));
}

/* ---- HTTP ---- */

static void hg_set_error(char **error, const char *message) {
  if (error) *error = hg_strndup((const uint8_t *)message, strlen(message));
}

static int hg_http_failed(wasi_http_types_error_code_t *code, char **error, bool *denied) {
  bool is_denied = code->tag == WASI_HTTP_TYPES_ERROR_CODE_HTTP_REQUEST_DENIED;
  if (denied) *denied = is_denied;
  if (is_denied) {
    hg_set_error(error,
                 "the request was denied: the host is not on this deployment's HTTP allowlist "
                 "(hypergraph deploy --allow-http <host>)");
  } else if (error) {
    char text[64];
    snprintf(text, sizeof text, "the request failed: wasi:http error code %u", code->tag);
    hg_set_error(error, text);
  }
  wasi_http_types_error_code_free(code);
  return -1;
}

int hg_http_request(const char *method, const char *url, const char *const *headers,
                    size_t header_count, const uint8_t *body, size_t body_len,
                    hg_response_t *response, char **error, bool *denied) {
  if (denied) *denied = false;
  memset(response, 0, sizeof *response);
  const char *sep = strstr(url, "://");
  if (!sep) {
    hg_set_error(error, "not an absolute http(s) URL");
    return -1;
  }
  wasi_http_types_scheme_t scheme;
  if (sep - url == 4 && strncmp(url, "http", 4) == 0) {
    scheme.tag = WASI_HTTP_TYPES_SCHEME_HTTP;
  } else if (sep - url == 5 && strncmp(url, "https", 5) == 0) {
    scheme.tag = WASI_HTTP_TYPES_SCHEME_HTTPS;
  } else {
    hg_set_error(error, "unsupported URL scheme");
    return -1;
  }
  const char *authority = sep + 3;
  size_t authority_len = strcspn(authority, "/?");
  if (authority_len == 0) {
    hg_set_error(error, "the URL has no host");
    return -1;
  }
  const char *path = authority + authority_len;

  wasi_http_types_own_fields_t fields = wasi_http_types_constructor_fields();
  for (size_t i = 0; i < header_count; i++) {
    const char *colon = strchr(headers[i], ':');
    if (!colon) continue;
    const char *value = colon + 1;
    while (*value == ' ') value++;
    task_string_t name = {(uint8_t *)headers[i], (size_t)(colon - headers[i])};
    wasi_http_types_field_value_t bytes = {(uint8_t *)value, strlen(value)};
    wasi_http_types_header_error_t header_error;
    if (!wasi_http_types_method_fields_append(wasi_http_types_borrow_fields(fields), &name, &bytes,
                                              &header_error)) {
      wasi_http_types_fields_drop_own(fields);
      hg_set_error(error, "invalid request header");
      return -1;
    }
  }
  wasi_http_types_own_outgoing_request_t request =
      wasi_http_types_constructor_outgoing_request(fields);
  wasi_http_types_borrow_outgoing_request_t borrowed = wasi_http_types_borrow_outgoing_request(request);

  static const char *const known[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                      "CONNECT", "OPTIONS", "TRACE", "PATCH"};
  wasi_http_types_method_t verb;
  verb.tag = WASI_HTTP_TYPES_METHOD_OTHER;
  verb.val.other = hg_str(method);
  for (uint8_t i = 0; i < sizeof known / sizeof known[0]; i++) {
    if (strcmp(method, known[i]) == 0) verb.tag = i;
  }
  wasi_http_types_method_outgoing_request_set_method(borrowed, &verb);
  wasi_http_types_method_outgoing_request_set_scheme(borrowed, &scheme);
  task_string_t authority_str = {(uint8_t *)authority, authority_len};
  wasi_http_types_method_outgoing_request_set_authority(borrowed, &authority_str);
  task_string_t path_str = *path ? hg_str(path) : hg_str("/");
  wasi_http_types_method_outgoing_request_set_path_with_query(borrowed, &path_str);

  wasi_http_types_own_outgoing_body_t outgoing;
  wasi_http_types_method_outgoing_request_body(borrowed, &outgoing);
  /* Hand the request over first: the host reads the body while the guest writes it. */
  wasi_http_outgoing_handler_own_future_incoming_response_t future;
  wasi_http_types_error_code_t code;
  if (!wasi_http_outgoing_handler_handle(request, NULL, &future, &code)) {
    wasi_http_types_outgoing_body_drop_own(outgoing);
    return hg_http_failed(&code, error, denied);
  }
  wasi_http_types_own_output_stream_t out;
  wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(outgoing), &out);
  for (size_t at = 0; at < body_len; at += 4096) {
    size_t n = body_len - at < 4096 ? body_len - at : 4096;
    task_list_u8_t chunk = {(uint8_t *)body + at, n};
    wasi_io_streams_stream_error_t stream_error;
    if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(
            wasi_io_streams_borrow_output_stream(out), &chunk, &stream_error)) {
      break;
    }
  }
  wasi_io_streams_output_stream_drop_own(out);
  if (!wasi_http_types_static_outgoing_body_finish(outgoing, NULL, &code)) {
    wasi_http_types_future_incoming_response_drop_own(future);
    return hg_http_failed(&code, error, denied);
  }

  wasi_http_types_borrow_future_incoming_response_t fut =
      wasi_http_types_borrow_future_incoming_response(future);
  wasi_io_poll_own_pollable_t pollable = wasi_http_types_method_future_incoming_response_subscribe(fut);
  wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(pollable));
  wasi_io_poll_pollable_drop_own(pollable);
  wasi_http_types_result_result_own_incoming_response_error_code_void_t got;
  bool ready = wasi_http_types_method_future_incoming_response_get(fut, &got);
  wasi_http_types_future_incoming_response_drop_own(future);
  if (!ready || got.is_err) {
    hg_set_error(error, "the response was already taken");
    return -1;
  }
  if (got.val.ok.is_err) return hg_http_failed(&got.val.ok.val.err, error, denied);
  wasi_http_types_own_incoming_response_t incoming = got.val.ok.val.ok;
  wasi_http_types_borrow_incoming_response_t resp = wasi_http_types_borrow_incoming_response(incoming);
  response->status = wasi_http_types_method_incoming_response_status(resp);
  wasi_http_types_own_incoming_body_t in_body;
  wasi_http_types_method_incoming_response_consume(resp, &in_body);
  wasi_http_types_own_input_stream_t in;
  wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(in_body), &in);
  size_t cap = 0, len = 0;
  uint8_t *data = NULL;
  for (;;) {
    task_list_u8_t chunk;
    wasi_io_streams_stream_error_t stream_error;
    if (!wasi_io_streams_method_input_stream_blocking_read(wasi_io_streams_borrow_input_stream(in),
                                                           65536, &chunk, &stream_error)) {
      wasi_io_streams_stream_error_free(&stream_error);
      break;
    }
    if (len + chunk.len + 1 > cap) {
      cap = (len + chunk.len + 1) * 2;
      data = realloc(data, cap);
      if (!data) abort();
    }
    if (chunk.len) memcpy(data + len, chunk.ptr, chunk.len);
    len += chunk.len;
    task_list_u8_free(&chunk);
  }
  /* The stream goes before its body, the body before the response. */
  wasi_io_streams_input_stream_drop_own(in);
  wasi_http_types_incoming_body_drop_own(in_body);
  wasi_http_types_incoming_response_drop_own(incoming);
  if (!data) {
    data = malloc(1);
    if (!data) abort();
  }
  data[len] = '\0';
  response->body = data;
  response->body_len = len;
  return 0;
}

int hg_http_get(const char *url, hg_response_t *response, char **error) {
  return hg_http_request("GET", url, NULL, 0, NULL, 0, response, error, NULL);
}

void hg_response_free(hg_response_t *response) {
  free(response->body);
  response->body = NULL;
  response->body_len = 0;
}

/* ---- JSON ---- */

char *hg_json_quote(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(n * 6 + 3);
  if (!out) abort();
  char *p = out;
  *p++ = '"';
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    switch (*c) {
      case '"': *p++ = '\\'; *p++ = '"'; break;
      case '\\': *p++ = '\\'; *p++ = '\\'; break;
      case '\n': *p++ = '\\'; *p++ = 'n'; break;
      case '\r': *p++ = '\\'; *p++ = 'r'; break;
      case '\t': *p++ = '\\'; *p++ = 't'; break;
      default:
        if (*c < 0x20) {
          p += sprintf(p, "\\u%04x", *c);
        } else {
          *p++ = (char)*c;
        }
    }
  }
  *p++ = '"';
  *p = '\0';
  return out;
}

#ifdef HG_WORKFLOW
/* ---- workflows ---- */

int64_t hg_start(const char *task, const char *input_json, char **error) {
  task_string_t t = hg_str(task), input = hg_str(input_json);
  uint32_t index;
  task_string_t err;
  if (!hypergraph_workflow_workflow_start(&t, &input, &index, &err)) {
    if (error) *error = hg_cstr(&err);
    task_string_free(&err);
    return -1;
  }
  return index;
}

static void hg_take_child_error(hypergraph_workflow_workflow_child_error_t *raw, hg_child_error_t *out) {
  if (out) {
    out->kind = hg_cstr(&raw->kind);
    out->message = hg_cstr(&raw->message);
    out->value = raw->value.is_some ? hg_cstr(&raw->value.val) : NULL;
  }
  hypergraph_workflow_workflow_child_error_free(raw);
}

size_t hg_join(const uint32_t *children, size_t count, char **outputs, hg_child_error_t *errors) {
  task_list_u32_t list = {(uint32_t *)children, count};
  hypergraph_workflow_workflow_list_result_string_child_error_t results;
  hypergraph_workflow_workflow_join(&list, &results);
  size_t failed = 0;
  for (size_t i = 0; i < results.len && i < count; i++) {
    hypergraph_workflow_workflow_result_string_child_error_t *r = &results.ptr[i];
    if (r->is_err) {
      failed++;
      outputs[i] = NULL;
      hg_take_child_error(&r->val.err, errors ? &errors[i] : NULL);
    } else {
      outputs[i] = hg_cstr(&r->val.ok);
      task_string_free(&r->val.ok);
    }
  }
  free(results.ptr);
  return failed;
}

int hg_call(const char *task, const char *input_json, char **output, hg_child_error_t *error) {
  task_string_t t = hg_str(task), input = hg_str(input_json), ok;
  hypergraph_workflow_workflow_child_error_t err;
  if (!hypergraph_workflow_workflow_call(&t, &input, &ok, &err)) {
    *output = NULL;
    hg_take_child_error(&err, error);
    return -1;
  }
  *output = hg_cstr(&ok);
  task_string_free(&ok);
  return 0;
}

void hg_child_error_free(hg_child_error_t *error) {
  free(error->kind);
  free(error->message);
  free(error->value);
  error->kind = error->message = error->value = NULL;
}

void hg_sleep_ms(uint64_t millis) { hypergraph_workflow_workflow_sleep(millis); }

char *hg_wait_event(const char *name, int64_t timeout_ms) {
  task_string_t n = hg_str(name), payload;
  uint64_t timeout = (uint64_t)timeout_ms;
  if (!hypergraph_workflow_workflow_wait_event(&n, timeout_ms < 0 ? NULL : &timeout, &payload)) {
    return NULL;
  }
  char *out = hg_cstr(&payload);
  task_string_free(&payload);
  return out;
}
#endif
