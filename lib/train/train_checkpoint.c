/* train_checkpoint.c — the checkpoint in <out>/checkpoint/: weights and
 * running statistics (safetensors), the optimizer state (a small binary
 * file), the best weights, and state.json, which names them and is
 * renamed into place last: a crash at any point leaves the previous
 * complete checkpoint. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/fs.h"
#include "train/train_internal.h"

#define STATE_FILE "state.json"
#define STATE_VERSION 1
static const char optim_magic[8] = {'K', 'I', 'L', 'N', 'O', 'P', 'T', '1'};

static int ck_path(const train_ctx *c, const char *name, char *out, size_t size, kiln_err *err)
{
    return kiln_path_join(out, size, c->ck_dir, name, err);
}

int train_checkpoint_best_path(const train_ctx *c, char *out, size_t size, kiln_err *err)
{
    return ck_path(c, c->best_file, out, size, err);
}

/* --- optimizer state -------------------------------------------------- */

static int optim_write(train_ctx *c, const char *path, kiln_err *err)
{
    size_t n = kiln_optim_state_count(c->optim);
    int64_t steps = kiln_optim_steps(c->optim);
    uint64_t n64 = n;
    float *host = malloc((n ? n : 1) * sizeof *host);
    if (!host)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory saving the optimizer state");
    int rc = kiln_optim_state_export(c->optim, host, n, err);
    kiln_atomic_file *f = rc == KILN_OK ? kiln_atomic_open(path, err) : NULL;
    if (!f) {
        free(host);
        return rc != KILN_OK ? rc : (err ? (int)err->code : KILN_EIO);
    }
    FILE *fp = kiln_atomic_stream(f);
    if (fwrite(optim_magic, 8, 1, fp) != 1 || fwrite(&n64, 8, 1, fp) != 1 ||
        fwrite(&steps, 8, 1, fp) != 1 || (n && fwrite(host, sizeof *host, n, fp) != n)) {
        kiln_atomic_abort(f);
        free(host);
        return kiln_err_errno(err, errno, "cannot write %s", path);
    }
    free(host);
    return kiln_atomic_commit(f, err);
}

static int optim_read(train_ctx *c, const char *path, kiln_err *err)
{
    char *data = NULL;
    size_t len = 0;
    uint64_t n64;
    int64_t steps;
    int rc = kiln_read_file(path, 0, &data, &len, err);
    if (rc != KILN_OK)
        return rc;
    if (len < 24 || memcmp(data, optim_magic, 8) != 0) {
        rc = kiln_err_set(err, KILN_EFORMAT, "%s: not a kiln optimizer state", path);
        goto out;
    }
    memcpy(&n64, data + 8, 8);
    memcpy(&steps, data + 16, 8);
    if (n64 != kiln_optim_state_count(c->optim) || len != 24 + n64 * sizeof(float)) {
        rc = kiln_err_set(err, KILN_EFORMAT,
                          "%s: holds %" PRIu64 " floats, the optimizer needs %zu "
                          "(different model or optimizer?)",
                          path, n64, kiln_optim_state_count(c->optim));
        goto out;
    }
    /* The file's floats are not aligned for float access: copy them. */
    float *host = malloc((n64 ? n64 : 1) * sizeof *host);
    if (!host) {
        rc = kiln_err_set(err, KILN_ENOMEM, "out of memory reading %s", path);
        goto out;
    }
    memcpy(host, data + 24, n64 * sizeof *host);
    rc = kiln_optim_state_import(c->optim, host, (size_t)n64, steps, err);
    free(host);
out:
    free(data);
    return rc;
}

/* --- state.json ------------------------------------------------------- */

static cJSON *history_to_json(const train_ctx *c)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < c->n_history; i++) {
        const kiln_train_epoch *e = &c->history[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "epoch", e->epoch);
        cJSON_AddNumberToObject(o, "train_loss", e->train_loss);
        cJSON_AddNumberToObject(o, "train_accuracy", e->train_accuracy);
        cJSON_AddNumberToObject(o, "val_loss", e->val_loss);
        cJSON_AddNumberToObject(o, "val_accuracy", e->val_accuracy);
        cJSON_AddNumberToObject(o, "learning_rate", e->learning_rate);
        cJSON_AddNumberToObject(o, "seconds", e->seconds);
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

char *train_history_json(const train_ctx *c)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "variant", c->o->cfg.train.model);
    cJSON_AddNumberToObject(root, "best_epoch", c->best_epoch);
    cJSON_AddNumberToObject(root, "best_val_accuracy", c->best_val_acc);
    cJSON_AddItemToObject(root, "epochs", history_to_json(c));
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}

static double num(const cJSON *o, const char *k, int *ok)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v)) {
        *ok = 0;
        return 0;
    }
    return v->valuedouble;
}

static const char *str(const cJSON *o, const char *k, int *ok)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(v)) {
        *ok = 0;
        return "";
    }
    return v->valuestring;
}

static int history_from_json(train_ctx *c, const cJSON *a)
{
    int n = cJSON_GetArraySize(a), ok = 1;
    free(c->history);
    c->n_history = 0;
    c->history = calloc((size_t)(n > 0 ? n : 1), sizeof *c->history);
    if (!c->history)
        return 0;
    for (int i = 0; i < n; i++) {
        const cJSON *o = cJSON_GetArrayItem(a, i);
        kiln_train_epoch *e = &c->history[i];
        e->epoch = (int)num(o, "epoch", &ok);
        e->train_loss = num(o, "train_loss", &ok);
        e->train_accuracy = num(o, "train_accuracy", &ok);
        e->val_loss = num(o, "val_loss", &ok);
        e->val_accuracy = num(o, "val_accuracy", &ok);
        e->learning_rate = num(o, "learning_rate", &ok);
        e->seconds = num(o, "seconds", &ok);
    }
    c->n_history = n;
    return ok;
}

static int copy_name(char *dst, size_t size, const char *src)
{
    if (strlen(src) >= size || strchr(src, '/'))
        return 0;
    memcpy(dst, src, strlen(src) + 1);
    return 1;
}

/* Fields of state.json into `c`, and the weight/optimizer names. */
static int state_parse(train_ctx *c, const cJSON *s, char *weights, char *optim, size_t size)
{
    int ok = cJSON_IsObject(s);
    if (ok && num(s, "version", &ok) != STATE_VERSION)
        return 0;
    if (strcmp(str(s, "variant", &ok), c->o->cfg.train.model) != 0)
        return -1;
    c->epoch = (int)num(s, "epoch", &ok);
    c->batch_pos = (uint32_t)num(s, "batch_pos", &ok);
    c->step = (int64_t)num(s, "step", &ok);
    c->sum_loss = num(s, "sum_loss", &ok);
    c->correct = (uint64_t)num(s, "correct", &ok);
    c->seen = (uint64_t)num(s, "seen", &ok);
    c->best_epoch = (int)num(s, "best_epoch", &ok);
    c->best_val_acc = num(s, "best_val_accuracy", &ok);
    c->bad_epochs = (int)num(s, "bad_epochs", &ok);
    ok = ok && copy_name(c->best_file, sizeof c->best_file, str(s, "best_weights", &ok)) &&
         copy_name(weights, size, str(s, "weights", &ok)) &&
         copy_name(optim, size, str(s, "optimizer", &ok)) &&
         copy_name(c->run_id, sizeof c->run_id, str(s, "run_id", &ok)) &&
         copy_name(c->dataset_sha, sizeof c->dataset_sha, str(s, "dataset_sha256", &ok));
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(s, "history");
    ok = ok && cJSON_IsArray(h) && history_from_json(c, h);
    return ok && c->epoch >= 0 && c->step >= 0 ? 1 : 0;
}

static int read_state_file(train_ctx *c, char *weights, char *optim, size_t size, kiln_err *err)
{
    char path[TRAIN_PATH_MAX];
    char *text = NULL;
    size_t len = 0;
    int rc = ck_path(c, STATE_FILE, path, sizeof path, err);
    if (rc != KILN_OK)
        return rc;
    if (!kiln_is_file(path))
        return kiln_err_set(err, KILN_ENOTFOUND, "--resume: no checkpoint in %s (no %s)",
                            c->ck_dir, STATE_FILE);
    if ((rc = kiln_read_file(path, 1u << 26, &text, &len, err)) != KILN_OK)
        return rc;
    cJSON *s = cJSON_ParseWithLength(text, len);
    int parsed = state_parse(c, s, weights, optim, size);
    cJSON_Delete(s);
    free(text);
    if (parsed < 0)
        return kiln_err_set(err, KILN_EINVAL, "%s: the checkpoint is not of a %s model", path,
                            c->o->cfg.train.model);
    if (parsed == 0)
        return kiln_err_set(err, KILN_EFORMAT, "%s: not a kiln checkpoint state", path);
    return KILN_OK;
}

int train_checkpoint_read_state(train_ctx *c, kiln_err *err)
{
    char w[64], o[64];
    return read_state_file(c, w, o, sizeof w, err);
}

int train_checkpoint_restore(train_ctx *c, kiln_err *err)
{
    char w[64], o[64], path[TRAIN_PATH_MAX];
    int rc = read_state_file(c, w, o, sizeof w, err);
    if (rc == KILN_OK)
        rc = ck_path(c, w, path, sizeof path, err);
    if (rc == KILN_OK &&
        (rc = kiln_effnet_load(c->model, path, KILN_EFFNET_LOAD_STRICT, 0, err)) != KILN_OK)
        kiln_err_wrap(err, "resuming from %s", c->ck_dir);
    if (rc == KILN_OK)
        rc = ck_path(c, o, path, sizeof path, err);
    if (rc == KILN_OK)
        rc = optim_read(c, path, err);
    if (rc == KILN_OK && kiln_optim_steps(c->optim) != c->step)
        rc = kiln_err_set(err, KILN_EFORMAT, "%s: optimizer steps %" PRId64 " but state says %" PRId64,
                          c->ck_dir, kiln_optim_steps(c->optim), c->step);
    return rc;
}

static cJSON *state_to_json(const train_ctx *c, const char *weights, const char *optim)
{
    cJSON *s = cJSON_CreateObject();
    cJSON_AddNumberToObject(s, "version", STATE_VERSION);
    cJSON_AddStringToObject(s, "variant", c->o->cfg.train.model);
    cJSON_AddNumberToObject(s, "num_classes", c->classes);
    cJSON_AddStringToObject(s, "dataset_sha256", c->dataset_sha);
    cJSON_AddNumberToObject(s, "epochs", c->epochs);
    cJSON_AddNumberToObject(s, "epoch", c->epoch);
    cJSON_AddNumberToObject(s, "batch_pos", c->batch_pos);
    cJSON_AddNumberToObject(s, "step", (double)c->step);
    cJSON_AddNumberToObject(s, "sum_loss", c->sum_loss);
    cJSON_AddNumberToObject(s, "correct", (double)c->correct);
    cJSON_AddNumberToObject(s, "seen", (double)c->seen);
    cJSON_AddNumberToObject(s, "best_epoch", c->best_epoch);
    cJSON_AddNumberToObject(s, "best_val_accuracy", c->best_val_acc);
    cJSON_AddNumberToObject(s, "bad_epochs", c->bad_epochs);
    cJSON_AddStringToObject(s, "best_weights", c->best_file);
    cJSON_AddStringToObject(s, "weights", weights);
    cJSON_AddStringToObject(s, "optimizer", optim);
    cJSON_AddStringToObject(s, "run_id", c->run_id);
    cJSON_AddItemToObject(s, "history", history_to_json(c));
    return s;
}

/* Remove weights-*, optim-*, best-* files that state.json no longer names. */
static void remove_stale(const train_ctx *c, const char *weights, const char *optim)
{
    DIR *d = opendir(c->ck_dir);
    struct dirent *e;
    char path[TRAIN_PATH_MAX];
    while (d && (e = readdir(d))) {
        const char *n = e->d_name;
        int ours = !strncmp(n, "weights-", 8) || !strncmp(n, "optim-", 6) ||
                   !strncmp(n, "best-", 5);
        if (!ours || !strcmp(n, weights) || !strcmp(n, optim) || !strcmp(n, c->best_file))
            continue;
        if (kiln_path_join(path, sizeof path, c->ck_dir, n, NULL) == KILN_OK)
            remove(path);
    }
    if (d)
        closedir(d);
}

int train_checkpoint_save(train_ctx *c, kiln_err *err)
{
    char w[64], o[64], path[TRAIN_PATH_MAX];
    snprintf(w, sizeof w, "weights-%08" PRId64 ".safetensors", c->step);
    snprintf(o, sizeof o, "optim-%08" PRId64 ".bin", c->step);
    int rc = kiln_mkdir_p(c->ck_dir, err);
    if (rc == KILN_OK)
        rc = ck_path(c, w, path, sizeof path, err);
    if (rc == KILN_OK)
        rc = kiln_effnet_save(c->model, path, err);
    if (rc == KILN_OK)
        rc = ck_path(c, o, path, sizeof path, err);
    if (rc == KILN_OK)
        rc = optim_write(c, path, err);
    if (rc == KILN_OK)
        rc = ck_path(c, STATE_FILE, path, sizeof path, err);
    if (rc != KILN_OK)
        return kiln_err_wrap(err, "checkpoint");
    cJSON *s = state_to_json(c, w, o);
    char *text = s ? cJSON_Print(s) : NULL;
    cJSON_Delete(s);
    if (!text)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory writing the checkpoint state");
    rc = kiln_write_file_atomic(path, text, strlen(text), err);
    free(text);
    if (rc != KILN_OK)
        return kiln_err_wrap(err, "checkpoint");
    remove_stale(c, w, o);
    return KILN_OK;
}

int train_checkpoint_save_best(train_ctx *c, kiln_err *err)
{
    char path[TRAIN_PATH_MAX];
    snprintf(c->best_file, sizeof c->best_file, "best-%04d.safetensors", c->best_epoch);
    int rc = kiln_mkdir_p(c->ck_dir, err);
    if (rc == KILN_OK)
        rc = ck_path(c, c->best_file, path, sizeof path, err);
    if (rc == KILN_OK)
        rc = kiln_effnet_save(c->model, path, err);
    return rc == KILN_OK ? rc : kiln_err_wrap(err, "saving the best weights");
}
