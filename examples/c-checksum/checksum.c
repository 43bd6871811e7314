/* c-checksum: checksums and run-length compression, a Hypergraph task in C. */
#include <stdlib.h>
#include <string.h>

#include "hypergraph.h"

static uint32_t adler32(const uint8_t *data, size_t len) {
  uint32_t a = 1, b = 0;
  for (size_t i = 0; i < len; i++) {
    a = (a + data[i]) % 65521;
    b = (b + a) % 65521;
  }
  return (b << 16) | a;
}

static uint32_t crc32(const uint8_t *data, size_t len) {
  static uint32_t table[256];
  /* Filled on every run: statics start from zero in each fresh instance. */
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[n] = c;
  }
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < len; i++) crc = table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

static void digest_of(const uint8_t *data, size_t len, task_digest_t *ret) {
  ret->bytes = len;
  ret->adler32 = adler32(data, len);
  ret->crc32 = crc32(data, len);
  hg_info("%zu bytes: adler32 %08x crc32 %08x", len, ret->adler32, ret->crc32);
}

void exports_task_checksum(task_list_u8_t *data, task_digest_t *ret) {
  digest_of(data->ptr, data->len, ret);
  task_list_u8_free(data);
}

void exports_task_checksum_text(task_string_t *text, task_digest_t *ret) {
  digest_of(text->ptr, text->len, ret);
  task_string_free(text);
}

void exports_task_compress(task_list_u8_t *data, task_list_u8_t *ret) {
  uint8_t *out = malloc(data->len * 2 + 1);
  size_t n = 0;
  for (size_t i = 0; i < data->len;) {
    uint8_t byte = data->ptr[i];
    size_t run = 1;
    while (i + run < data->len && data->ptr[i + run] == byte && run < 255) run++;
    out[n++] = (uint8_t)run;
    out[n++] = byte;
    i += run;
  }
  hg_info("compressed %zu bytes to %zu", data->len, n);
  task_list_u8_free(data);
  ret->ptr = out;
  ret->len = n;
}

bool exports_task_decompress(task_list_u8_t *data, task_list_u8_t *ret, task_string_t *err) {
  if (data->len % 2) {
    task_list_u8_free(data);
    *err = hg_string_dup("not run-length data: odd length");
    return false;
  }
  size_t total = 0;
  for (size_t i = 0; i < data->len; i += 2) total += data->ptr[i];
  uint8_t *out = malloc(total ? total : 1);
  size_t n = 0;
  for (size_t i = 0; i < data->len; i += 2) {
    memset(out + n, data->ptr[i + 1], data->ptr[i]);
    n += data->ptr[i];
  }
  task_list_u8_free(data);
  ret->ptr = out;
  ret->len = n;
  return true;
}
