/*
 * objstore plugin ABI, version 1.
 *
 * An objstore plugin is a shared library that exports one symbol:
 *
 *     const objstore_plugin_v1 *objstore_plugin_entry(void);
 *
 * The host calls it once after loading the library, reads `abi_version` FIRST, and uses
 * nothing else in the table unless it equals OBJSTORE_ABI_VERSION. `struct_size` must be
 * sizeof(objstore_plugin_v1) as the plugin was compiled.
 *
 * Memory ownership: nothing allocated on one side is ever freed on the other.
 *   - Strings and buffers passed INTO a function (objstore_str, const uint8_t *, the config
 *     and its meta array, the range array) are borrowed for the duration of that call only.
 *   - Output buffers (read_at, read_ranges, reader_read) are allocated by the HOST; the plugin
 *     fills at most the given capacity.
 *   - Variable-size outputs (list entries, local_path) are delivered through a callback the
 *     host provides; the plugin's strings are borrowed for the duration of the callback.
 *   - Errors are written into the host's objstore_error, whose message is a fixed buffer
 *     (truncated at OBJSTORE_ERROR_MESSAGE_CAP bytes).
 *   - Handles (store, reader, writer) are created by the plugin and owned by the host, which
 *     releases each exactly once: close(store); reader_close(reader); writer_commit(writer) or
 *     writer_abort(writer). A store is closed only after all its readers and writers.
 *
 * Threads: the functions taking a store handle may be called from many threads at once. A
 * reader or writer is used by one thread at a time. No function pointer in the table may be
 * NULL: the host refuses such a table.
 *
 * Strings are UTF-8 and NOT NUL-terminated: always use `len`.
 *
 * Every function returning int32_t returns one of the OBJSTORE_* status codes; on anything
 * but OBJSTORE_OK it should also fill `err` (its code and a message). A function must not
 * unwind (no C++ exceptions, no Rust panics) across this boundary.
 *
 * Object paths are relative, '/'-separated, with no empty, "." or ".." component; the host
 * validates them before calling. Ranges are clamped to the object: read_at/read_ranges report
 * how many bytes each range produced.
 */
#ifndef OBJSTORE_H
#define OBJSTORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OBJSTORE_ABI_VERSION 1u
#define OBJSTORE_ERROR_MESSAGE_CAP 1024u
#define OBJSTORE_FS_TYPE_CAP 64u

/* Status codes. */
#define OBJSTORE_OK 0
#define OBJSTORE_NOT_FOUND 1        /* no such object (a directory is not an object) */
#define OBJSTORE_READ_ONLY 2        /* put/delete on a read-only store */
#define OBJSTORE_INVALID_PATH 3     /* the path is not a valid object path */
#define OBJSTORE_NOT_REGULAR_FILE 4 /* exists, but is not a regular file (strict stores) */
#define OBJSTORE_INVALID_CONFIG 5   /* open: the config is refused */
#define OBJSTORE_UNSUPPORTED 6      /* e.g. local_path on a store without local files */
#define OBJSTORE_BACKEND 7          /* I/O, network or service failure */
#define OBJSTORE_PANIC 8            /* the plugin caught an internal crash */

/* Bits of objstore_info.known. */
#define OBJSTORE_INFO_TOTAL 1u
#define OBJSTORE_INFO_FREE 2u
#define OBJSTORE_INFO_USED 4u

typedef struct objstore_str {
    const char *ptr;
    size_t len;
} objstore_str;

typedef struct objstore_kv {
    objstore_str key;
    objstore_str value;
} objstore_kv;

/* The store config: the keys of [[Common.PersistStores]] / [[attached]]. */
typedef struct objstore_config {
    objstore_str name;        /* instance name (never empty: the host puts the path there) */
    objstore_str path;        /* backend location */
    const objstore_kv *meta;  /* Meta table, meta_len entries */
    size_t meta_len;
    uint8_t strict;           /* only regular files are objects */
    uint8_t read_only;        /* refuse put and delete */
    uint32_t weight;
    objstore_str plugin_name; /* the PluginName the host looked this plugin up by */
} objstore_config;

typedef struct objstore_error {
    int32_t code;
    size_t message_len;
    char message[OBJSTORE_ERROR_MESSAGE_CAP];
} objstore_error;

typedef struct objstore_range {
    uint64_t offset;
    uint64_t len;
} objstore_range;

typedef struct objstore_info {
    uint32_t known; /* OBJSTORE_INFO_* bits: which of the three numbers are meaningful */
    uint64_t total;
    uint64_t free;
    uint64_t used;
    /* Backend kind, UTF-8, NUL-padded, e.g. "fs/ext4", "s3", "memory". */
    char kind[OBJSTORE_FS_TYPE_CAP];
} objstore_info;

/* Receives one list entry; `path` is borrowed for the duration of the call. A callback never
   calls back into the plugin, so a plugin may hold its own locks while calling it. */
typedef void (*objstore_list_fn)(void *ctx, objstore_str path, uint64_t size);
/* Receives one string; borrowed for the duration of the call. */
typedef void (*objstore_str_fn)(void *ctx, objstore_str value);

typedef struct objstore_plugin_v1 {
    uint32_t abi_version; /* OBJSTORE_ABI_VERSION: read first */
    uint32_t struct_size; /* sizeof(objstore_plugin_v1) */
    objstore_str name;    /* plugin name, static storage */

    int32_t (*open)(const objstore_config *config, void **store, objstore_error *err);
    void (*close)(void *store);

    int32_t (*info)(void *store, objstore_info *out, objstore_error *err);
    int32_t (*stat)(void *store, objstore_str path, uint64_t *size, objstore_error *err);

    /* Reads up to `len` bytes at `offset` into `buf`; `*read` is the count (fewer at the end). */
    int32_t (*read_at)(void *store, objstore_str path, uint64_t offset, uint8_t *buf, size_t len,
                       size_t *read, objstore_error *err);
    /* Reads `n` ranges, one after the other, into `buf` (buf_len >= the sum of the lens);
       `read[i]` is what range i produced (ranges are clamped to the object). */
    int32_t (*read_ranges)(void *store, objstore_str path, const objstore_range *ranges, size_t n,
                           uint8_t *buf, size_t buf_len, uint64_t *read, objstore_error *err);

    /* Streaming read of a whole object. `*n == 0` means the end. */
    int32_t (*reader_open)(void *store, objstore_str path, void **reader, objstore_error *err);
    int32_t (*reader_read)(void *reader, uint8_t *buf, size_t cap, size_t *n, objstore_error *err);
    void (*reader_close)(void *reader);

    /* Streaming write: the object appears at commit, complete; abort discards it. Both consume
       the writer, also when commit fails. */
    int32_t (*writer_open)(void *store, objstore_str path, void **writer, objstore_error *err);
    int32_t (*writer_write)(void *writer, const uint8_t *buf, size_t len, objstore_error *err);
    int32_t (*writer_commit)(void *writer, uint64_t *size, objstore_error *err);
    void (*writer_abort)(void *writer);

    int32_t (*remove)(void *store, objstore_str path, objstore_error *err);
    /* Calls `emit` once per object below `prefix`, which works like a directory ("a/b" lists
       "a/b/c" but not "a/b" itself nor "a/bc"; empty: all), in any order. */
    int32_t (*list)(void *store, objstore_str prefix, void *ctx, objstore_list_fn emit,
                    objstore_error *err);
    /* Calls `emit` with the local file path of the object, or returns OBJSTORE_UNSUPPORTED. */
    int32_t (*local_path)(void *store, objstore_str path, void *ctx, objstore_str_fn emit,
                          objstore_error *err);
    /* Calls `emit` with the absolute location of the object for display (e.g. s3://b/k). */
    int32_t (*full_path)(void *store, objstore_str path, void *ctx, objstore_str_fn emit,
                         objstore_error *err);
} objstore_plugin_v1;

/* The one exported symbol. */
const objstore_plugin_v1 *objstore_plugin_entry(void);

#ifdef __cplusplus
}
#endif

#endif /* OBJSTORE_H */
