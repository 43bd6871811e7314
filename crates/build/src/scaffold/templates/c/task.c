/* {{name}}: a Hypergraph task in C (see README.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hypergraph.h"

/* export greet: func(name: string) -> string; */
void exports_task_greet(task_string_t *name, task_string_t *ret) {
  char *who = hg_cstr(name);
  task_string_free(name); /* arguments belong to the callee */
  hg_info("greeting %s (attempt %u)", who, hg_attempt());
  char greeting[256];
  snprintf(greeting, sizeof greeting, "Hello, %s!", who);
  printf("%s\n", greeting); /* stdout lines become log lines of the run */
  free(who);
  *ret = hg_string_dup(greeting); /* results are freed by the host */
}
{{#workflow}}

/* export greet-all: func(names: list<string>) -> list<string>; */
void exports_task_greet_all(task_list_string_t *names, task_list_string_t *ret) {
  /* Children are tasks of this deployment: `<deployment>/greet`. */
  char *task = hg_task_name();
  char *slash = strchr(task, '/');
  if (slash) strcpy(slash, "/greet");
  uint32_t *children = calloc(names->len ? names->len : 1, sizeof *children);
  for (size_t i = 0; i < names->len; i++) {
    char *who = hg_cstr(&names->ptr[i]);
    char *input = hg_json_quote(who);
    char *error = NULL;
    int64_t child = hg_start(task, input, &error);
    if (child < 0) {
      hg_error("cannot start %s: %s", task, error);
      abort();
    }
    children[i] = (uint32_t)child;
    free(who);
    free(input);
  }
  char **outputs = calloc(names->len ? names->len : 1, sizeof *outputs);
  if (hg_join(children, names->len, outputs, NULL) > 0) abort();
  ret->len = names->len;
  ret->ptr = calloc(names->len ? names->len : 1, sizeof *ret->ptr);
  for (size_t i = 0; i < names->len; i++) {
    /* Each output is a JSON string literal: drop its quotes (the greetings need no unescaping). */
    size_t len = strlen(outputs[i]);
    outputs[i][len - 1] = '\0';
    ret->ptr[i] = hg_string_dup(outputs[i] + 1);
    free(outputs[i]);
  }
  free(outputs);
  free(children);
  free(task);
  task_list_string_free(names);
}
{{/workflow}}
