/* C guest of the host's guarantee tests: fresh instances, journaled non-determinism, traps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hypergraph.h"

static uint32_t count;

uint32_t exports_task_bump(void) { return ++count; }

void exports_task_entropy(task_string_t *ret) {
  unsigned seed;
  getentropy(&seed, sizeof seed); /* WASI random, journaled */
  srand(seed);
  int r1 = rand(), r2 = rand();
  unsigned char bytes[4];
  getentropy(bytes, sizeof bytes);
  char text[256];
  snprintf(text, sizeof text,
           "{\"time\":%lld,\"rand\":[%d,%d],\"bytes\":[%u,%u,%u,%u]}", (long long)time(NULL), r1,
           r2, bytes[0], bytes[1], bytes[2], bytes[3]);
  hg_info("entropy %s", text);
  *ret = hg_string_dup(text);
}

uint32_t exports_task_fail(task_string_t *message) {
  char *text = hg_cstr(message);
  task_string_free(message);
  fprintf(stderr, "giving up: %s\n", text);
  abort();
}

bool exports_task_remember(task_string_t *key, task_string_t *value, task_string_t *ret) {
  char *k = hg_cstr(key), *v = hg_cstr(value);
  task_string_free(key);
  task_string_free(value);
  char *previous = hg_kv_get_string(k);
  hg_kv_set_string(k, v);
  free(k);
  free(v);
  if (!previous) return false;
  *ret = hg_string_dup(previous);
  free(previous);
  return true;
}
