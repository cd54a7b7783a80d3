/*
 * memstore: an example objstore plugin in C (ABI version 1).
 *
 * Objects live in memory. Stores opened with the same `Path` share one namespace, so a
 * read-only store sees what a writable one wrote; a namespace is freed when its last store
 * closes. It implements every function of objstore_plugin_v1 and passes the objstore
 * conformance suite.
 *
 * Build:  cc -shared -fPIC -O2 -pthread -I objstore/include memstore.c -o libobjstore_cmem.so
 *
 * Test-only switches (used by the loader tests):
 *   -DMEMSTORE_ABI_VERSION=N   report another ABI version
 *   -DMEMSTORE_NO_ENTRY        do not export objstore_plugin_entry
 *   -DMEMSTORE_NULL_LIST       leave the `list` function NULL
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "objstore.h"

#ifndef MEMSTORE_ABI_VERSION
#define MEMSTORE_ABI_VERSION OBJSTORE_ABI_VERSION
#endif

typedef struct object {
    char *path;
    size_t path_len;
    uint8_t *data;
    size_t len;
} object;

typedef struct ns {
    char *name; /* the store Path */
    size_t name_len;
    int refs;
    pthread_mutex_t lock;
    object *objects;
    size_t count;
    size_t cap;
    struct ns *next;
} ns;

typedef struct store {
    ns *space;
    int read_only;
    char *instance;
    size_t instance_len;
} store;

typedef struct reader {
    uint8_t *data; /* a private copy: the object may change while it is read */
    size_t len;
    size_t pos;
} reader;

typedef struct writer {
    store *st;
    char *path;
    size_t path_len;
    uint8_t *data;
    size_t len;
    size_t cap;
} writer;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static ns *registry = NULL;

static int32_t fail(objstore_error *err, int32_t code, const char *message) {
    if (err) {
        size_t n = strlen(message);
        if (n > OBJSTORE_ERROR_MESSAGE_CAP) n = OBJSTORE_ERROR_MESSAGE_CAP;
        err->code = code;
        memcpy(err->message, message, n);
        err->message_len = n;
    }
    return code;
}

static char *copy_str(objstore_str s) {
    char *out = malloc(s.len + 1);
    if (!out) return NULL;
    if (s.len) memcpy(out, s.ptr, s.len);
    out[s.len] = '\0';
    return out;
}

static int str_eq(const char *a, size_t alen, objstore_str b) {
    return alen == b.len && (alen == 0 || memcmp(a, b.ptr, alen) == 0);
}

/* Index of the object at `path`, or -1. Caller holds the namespace lock. */
static long find(ns *space, objstore_str path) {
    for (size_t i = 0; i < space->count; i++) {
        if (str_eq(space->objects[i].path, space->objects[i].path_len, path)) return (long)i;
    }
    return -1;
}

static int32_t mem_open(const objstore_config *config, void **out, objstore_error *err) {
    if (!config || !out) return fail(err, OBJSTORE_INVALID_CONFIG, "null config");
    if (config->path.len == 0)
        return fail(err, OBJSTORE_INVALID_CONFIG, "memstore: Path names the namespace and must not be empty");
    for (size_t i = 0; i < config->meta_len; i++) {
        objstore_kv kv = config->meta[i];
        if (str_eq("reject", 6, kv.key))
            return fail(err, OBJSTORE_INVALID_CONFIG, "memstore: refusing the config as Meta.reject asks");
    }
    store *st = calloc(1, sizeof(store));
    if (!st) return fail(err, OBJSTORE_BACKEND, "out of memory");
    st->instance = copy_str(config->name);
    st->instance_len = config->name.len;
    st->read_only = config->read_only != 0;
    if (!st->instance) {
        free(st);
        return fail(err, OBJSTORE_BACKEND, "out of memory");
    }

    pthread_mutex_lock(&registry_lock);
    ns *space = registry;
    while (space && !str_eq(space->name, space->name_len, config->path)) space = space->next;
    if (!space) {
        space = calloc(1, sizeof(ns));
        if (space) space->name = copy_str(config->path);
        if (!space || !space->name) {
            free(space);
            pthread_mutex_unlock(&registry_lock);
            free(st->instance);
            free(st);
            return fail(err, OBJSTORE_BACKEND, "out of memory");
        }
        space->name_len = config->path.len;
        pthread_mutex_init(&space->lock, NULL);
        space->next = registry;
        registry = space;
    }
    space->refs++;
    pthread_mutex_unlock(&registry_lock);

    st->space = space;
    *out = st;
    return OBJSTORE_OK;
}

static void mem_close(void *handle) {
    store *st = handle;
    if (!st) return;
    pthread_mutex_lock(&registry_lock);
    ns *space = st->space;
    if (--space->refs == 0) {
        ns **link = &registry;
        while (*link != space) link = &(*link)->next;
        *link = space->next;
        for (size_t i = 0; i < space->count; i++) {
            free(space->objects[i].path);
            free(space->objects[i].data);
        }
        free(space->objects);
        pthread_mutex_destroy(&space->lock);
        free(space->name);
        free(space);
    }
    pthread_mutex_unlock(&registry_lock);
    free(st->instance);
    free(st);
}

static int32_t mem_info(void *handle, objstore_info *out, objstore_error *err) {
    store *st = handle;
    (void)err;
    uint64_t used = 0;
    pthread_mutex_lock(&st->space->lock);
    for (size_t i = 0; i < st->space->count; i++) used += st->space->objects[i].len;
    pthread_mutex_unlock(&st->space->lock);
    memset(out, 0, sizeof(*out));
    out->known = OBJSTORE_INFO_USED;
    out->used = used;
    snprintf(out->kind, sizeof(out->kind), "memory");
    return OBJSTORE_OK;
}

static int32_t mem_stat(void *handle, objstore_str path, uint64_t *size, objstore_error *err) {
    store *st = handle;
    pthread_mutex_lock(&st->space->lock);
    long i = find(st->space, path);
    if (i >= 0) *size = st->space->objects[i].len;
    pthread_mutex_unlock(&st->space->lock);
    return i >= 0 ? OBJSTORE_OK : fail(err, OBJSTORE_NOT_FOUND, "no such object");
}

/* Copies the clamped range [offset, offset+len) of object i into dst; returns the count. */
static size_t copy_range(object *obj, uint64_t offset, uint64_t len, uint8_t *dst) {
    if (offset >= obj->len) return 0;
    uint64_t avail = obj->len - offset;
    size_t n = (size_t)(len < avail ? len : avail);
    if (n) memcpy(dst, obj->data + offset, n);
    return n;
}

static int32_t mem_read_at(void *handle, objstore_str path, uint64_t offset, uint8_t *buf, size_t len,
                           size_t *read, objstore_error *err) {
    store *st = handle;
    pthread_mutex_lock(&st->space->lock);
    long i = find(st->space, path);
    if (i >= 0) *read = copy_range(&st->space->objects[i], offset, len, buf);
    pthread_mutex_unlock(&st->space->lock);
    return i >= 0 ? OBJSTORE_OK : fail(err, OBJSTORE_NOT_FOUND, "no such object");
}

static int32_t mem_read_ranges(void *handle, objstore_str path, const objstore_range *ranges, size_t n,
                               uint8_t *buf, size_t buf_len, uint64_t *read, objstore_error *err) {
    store *st = handle;
    uint64_t need = 0;
    for (size_t r = 0; r < n; r++) {
        if (ranges[r].len > (uint64_t)buf_len - need) return fail(err, OBJSTORE_BACKEND, "buffer smaller than the ranges");
        need += ranges[r].len;
    }
    pthread_mutex_lock(&st->space->lock);
    long i = find(st->space, path);
    if (i >= 0) {
        size_t at = 0;
        for (size_t r = 0; r < n; r++) {
            read[r] = copy_range(&st->space->objects[i], ranges[r].offset, ranges[r].len, buf + at);
            at += (size_t)ranges[r].len;
        }
    }
    pthread_mutex_unlock(&st->space->lock);
    return i >= 0 ? OBJSTORE_OK : fail(err, OBJSTORE_NOT_FOUND, "no such object");
}

static int32_t mem_reader_open(void *handle, objstore_str path, void **out, objstore_error *err) {
    store *st = handle;
    reader *rd = calloc(1, sizeof(reader));
    if (!rd) return fail(err, OBJSTORE_BACKEND, "out of memory");
    int32_t code = OBJSTORE_OK;
    pthread_mutex_lock(&st->space->lock);
    long i = find(st->space, path);
    if (i < 0) {
        code = OBJSTORE_NOT_FOUND;
    } else {
        object *obj = &st->space->objects[i];
        rd->len = obj->len;
        rd->data = malloc(obj->len ? obj->len : 1);
        if (!rd->data) code = OBJSTORE_BACKEND;
        else if (obj->len) memcpy(rd->data, obj->data, obj->len);
    }
    pthread_mutex_unlock(&st->space->lock);
    if (code != OBJSTORE_OK) {
        free(rd->data);
        free(rd);
        return fail(err, code, code == OBJSTORE_NOT_FOUND ? "no such object" : "out of memory");
    }
    *out = rd;
    return OBJSTORE_OK;
}

static int32_t mem_reader_read(void *handle, uint8_t *buf, size_t cap, size_t *n, objstore_error *err) {
    reader *rd = handle;
    (void)err;
    size_t left = rd->len - rd->pos;
    size_t take = cap < left ? cap : left;
    if (take) memcpy(buf, rd->data + rd->pos, take);
    rd->pos += take;
    *n = take;
    return OBJSTORE_OK;
}

static void mem_reader_close(void *handle) {
    reader *rd = handle;
    if (!rd) return;
    free(rd->data);
    free(rd);
}

static int32_t mem_writer_open(void *handle, objstore_str path, void **out, objstore_error *err) {
    store *st = handle;
    if (st->read_only) return fail(err, OBJSTORE_READ_ONLY, "read only store");
    writer *w = calloc(1, sizeof(writer));
    if (!w) return fail(err, OBJSTORE_BACKEND, "out of memory");
    w->path = copy_str(path);
    if (!w->path) {
        free(w);
        return fail(err, OBJSTORE_BACKEND, "out of memory");
    }
    w->path_len = path.len;
    w->st = st;
    *out = w;
    return OBJSTORE_OK;
}

static int32_t mem_writer_write(void *handle, const uint8_t *buf, size_t len, objstore_error *err) {
    writer *w = handle;
    if (w->len + len > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + len) cap *= 2;
        uint8_t *grown = realloc(w->data, cap);
        if (!grown) return fail(err, OBJSTORE_BACKEND, "out of memory");
        w->data = grown;
        w->cap = cap;
    }
    if (len) memcpy(w->data + w->len, buf, len);
    w->len += len;
    return OBJSTORE_OK;
}

static void writer_free(writer *w) {
    free(w->path);
    free(w->data);
    free(w);
}

static int32_t mem_writer_commit(void *handle, uint64_t *size, objstore_error *err) {
    writer *w = handle;
    ns *space = w->st->space;
    int32_t code = OBJSTORE_OK;
    pthread_mutex_lock(&space->lock);
    objstore_str path = {w->path, w->path_len};
    long i = find(space, path);
    if (i >= 0) {
        free(space->objects[i].data);
        space->objects[i].data = w->data;
        space->objects[i].len = w->len;
        w->data = NULL;
    } else {
        if (space->count == space->cap) {
            size_t cap = space->cap ? space->cap * 2 : 16;
            object *grown = realloc(space->objects, cap * sizeof(object));
            if (!grown) code = OBJSTORE_BACKEND;
            else {
                space->objects = grown;
                space->cap = cap;
            }
        }
        if (code == OBJSTORE_OK) {
            object *obj = &space->objects[space->count++];
            obj->path = w->path;
            obj->path_len = w->path_len;
            obj->data = w->data;
            obj->len = w->len;
            w->path = NULL;
            w->data = NULL;
        }
    }
    pthread_mutex_unlock(&space->lock);
    *size = w->len;
    writer_free(w);
    return code == OBJSTORE_OK ? OBJSTORE_OK : fail(err, code, "out of memory");
}

static void mem_writer_abort(void *handle) {
    if (handle) writer_free(handle);
}

static int32_t mem_remove(void *handle, objstore_str path, objstore_error *err) {
    store *st = handle;
    if (st->read_only) return fail(err, OBJSTORE_READ_ONLY, "read only store");
    pthread_mutex_lock(&st->space->lock);
    long i = find(st->space, path);
    if (i >= 0) {
        free(st->space->objects[i].path);
        free(st->space->objects[i].data);
        st->space->objects[i] = st->space->objects[--st->space->count];
    }
    pthread_mutex_unlock(&st->space->lock);
    return i >= 0 ? OBJSTORE_OK : fail(err, OBJSTORE_NOT_FOUND, "no such object");
}

#ifdef MEMSTORE_NULL_LIST
__attribute__((unused))
#endif
static int32_t mem_list(void *handle, objstore_str prefix, void *ctx, objstore_list_fn emit, objstore_error *err) {
    store *st = handle;
    (void)err;
    pthread_mutex_lock(&st->space->lock);
    for (size_t i = 0; i < st->space->count; i++) {
        object *obj = &st->space->objects[i];
        int under = prefix.len == 0 ||
                    (obj->path_len > prefix.len && memcmp(obj->path, prefix.ptr, prefix.len) == 0 &&
                     obj->path[prefix.len] == '/');
        if (under) {
            objstore_str p = {obj->path, obj->path_len};
            emit(ctx, p, obj->len);
        }
    }
    pthread_mutex_unlock(&st->space->lock);
    return OBJSTORE_OK;
}

static int32_t mem_local_path(void *handle, objstore_str path, void *ctx, objstore_str_fn emit, objstore_error *err) {
    (void)handle;
    (void)path;
    (void)ctx;
    (void)emit;
    return fail(err, OBJSTORE_UNSUPPORTED, "memory objects have no local path");
}

static int32_t mem_full_path(void *handle, objstore_str path, void *ctx, objstore_str_fn emit, objstore_error *err) {
    store *st = handle;
    size_t n = 6 + st->instance_len + 1 + path.len;
    char *full = malloc(n + 1);
    if (!full) return fail(err, OBJSTORE_BACKEND, "out of memory");
    memcpy(full, "mem://", 6);
    memcpy(full + 6, st->instance, st->instance_len);
    full[6 + st->instance_len] = '/';
    if (path.len) memcpy(full + 7 + st->instance_len, path.ptr, path.len);
    objstore_str out = {full, n};
    emit(ctx, out);
    free(full);
    return OBJSTORE_OK;
}

static const objstore_plugin_v1 TABLE = {
    .abi_version = MEMSTORE_ABI_VERSION,
    .struct_size = sizeof(objstore_plugin_v1),
    .name = {"cmem", 4},
    .open = mem_open,
    .close = mem_close,
    .info = mem_info,
    .stat = mem_stat,
    .read_at = mem_read_at,
    .read_ranges = mem_read_ranges,
    .reader_open = mem_reader_open,
    .reader_read = mem_reader_read,
    .reader_close = mem_reader_close,
    .writer_open = mem_writer_open,
    .writer_write = mem_writer_write,
    .writer_commit = mem_writer_commit,
    .writer_abort = mem_writer_abort,
    .remove = mem_remove,
#ifdef MEMSTORE_NULL_LIST
    .list = NULL,
#else
    .list = mem_list,
#endif
    .local_path = mem_local_path,
    .full_path = mem_full_path,
};

#ifndef MEMSTORE_NO_ENTRY
const objstore_plugin_v1 *objstore_plugin_entry(void) { return &TABLE; }
#else
const objstore_plugin_v1 *memstore_entry_under_another_name(void) { return &TABLE; }
#endif
