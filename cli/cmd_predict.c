/* kiln predict: a model package on image files, with the preprocessing
 * and inference code kiln-serve uses (lib/serve). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "common/fs.h"
#include "serve/serve.h"

#define MAX_FILE_BYTES ((size_t)256 << 20)

static void predict_usage(FILE *out)
{
    fprintf(out,
            "usage: kiln predict --model MODEL_DIR [options] IMAGE...\n\n"
            "Classifies JPEG/PNG files with a model package, preprocessed as its\n"
            "kiln-model.json says (exactly as kiln-serve does), and prints the class and\n"
            "its confidence for each file.\n\n"
            "options:\n"
            "  --threads N       CPU threads (default: all cores)\n"
            "  --max-pixels N    refuse larger images (default 40000000)\n"
            "  --json            one JSON object per file: file, prediction, confidence,\n"
            "                    probabilities\n");
}

typedef struct predict_flags {
    const char *model;
    int threads, json, max_pixels;
} predict_flags;

enum { OPT_MODEL = 1000, OPT_THREADS, OPT_PIXELS, OPT_JSON };

static const struct option options[] = {
    {"model", required_argument, NULL, OPT_MODEL},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"max-pixels", required_argument, NULL, OPT_PIXELS},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* 0, 1 for --help, 2 for a usage error. */
static int parse(int argc, char **argv, predict_flags *f)
{
    int opt;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    memset(f, 0, sizeof *f);
    f->threads = cores > 0 ? (int)(cores < 64 ? cores : 64) : 1;
    f->max_pixels = 40000000;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        int rc = 0;
        switch (opt) {
        case 'h': return 1;
        case OPT_MODEL: f->model = optarg; break;
        case OPT_JSON: f->json = 1; break;
        case OPT_THREADS:
            rc = kiln_cli_int_flag("predict", "--threads", optarg, 1, 256, &f->threads);
            break;
        case OPT_PIXELS:
            rc = kiln_cli_int_flag("predict", "--max-pixels", optarg, 1, 1000000000,
                                   &f->max_pixels);
            break;
        default:
            fprintf(stderr, "kiln predict: unknown option or missing value: %s\n",
                    argv[optind - 1]);
            return 2;
        }
        if (rc)
            return rc;
    }
    if (!f->model) {
        fprintf(stderr, "kiln predict: --model is required\n");
        return 2;
    }
    if (optind >= argc) {
        fprintf(stderr, "kiln predict: no image files given\n");
        return 2;
    }
    return 0;
}

static void print_result(const predict_flags *f, const char *file, const kiln_model_info *in,
                         const float *probs, int label)
{
    if (!f->json) {
        printf("%s: %s (confidence %.4f)\n", file, in->classes[label], (double)probs[label]);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", file);
    cJSON_AddStringToObject(o, "prediction", in->classes[label]);
    cJSON_AddNumberToObject(o, "confidence", probs[label]);
    cJSON *p = cJSON_AddObjectToObject(o, "probabilities");
    for (int i = 0; p && i < in->num_classes; i++)
        cJSON_AddNumberToObject(p, in->classes[i], probs[i]);
    char *text = cJSON_PrintUnformatted(o);
    if (text)
        printf("%s\n", text);
    free(text);
    cJSON_Delete(o);
}

int kiln_cmd_predict(int argc, char **argv, const kiln_logger *log)
{
    (void)log;
    predict_flags f;
    int rc = parse(argc, argv, &f);
    if (rc == 1) {
        predict_usage(stdout);
        return 0;
    }
    if (rc) {
        fprintf(stderr, "Try 'kiln predict --help'.\n");
        return 2;
    }
    kiln_err err = {0};
    kiln_serve_model *m = kiln_serve_model_load(f.model, "cpu", f.threads, NULL, &err);
    if (!m) {
        fprintf(stderr, "kiln predict: %s\n", err.msg);
        return kiln_code_exit_status(err.code);
    }
    const kiln_model_info *in = kiln_serve_model_info(m);
    float *probs = malloc((size_t)in->num_classes * sizeof *probs);
    int status = probs ? 0 : 1;
    for (int i = optind; probs && i < argc; i++) {
        char *data = NULL;
        size_t len = 0;
        int label = 0;
        if (kiln_read_file(argv[i], MAX_FILE_BYTES, &data, &len, &err) != KILN_OK ||
            kiln_serve_model_predict_image(m, (const uint8_t *)data, len,
                                           (uint64_t)f.max_pixels, probs, &label,
                                           &err) != KILN_OK) {
            fprintf(stderr, "kiln predict: %s: %s\n", argv[i], err.msg);
            status = 1;
        } else {
            print_result(&f, argv[i], in, probs, label);
        }
        free(data);
        fflush(stdout);
    }
    free(probs);
    kiln_serve_model_unref(m);
    return status;
}
