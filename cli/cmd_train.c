/* kiln train: flags and config onto kiln_train; signal handling, the
 * progress line on a terminal, and the MLflow client. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/signals.h"
#include "cli.h"
#include "gpu/gpu.h"
#include "train/train.h"

/* Set by the handler, read by the training loop between batches. */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void train_usage(FILE *out)
{
    fprintf(out,
            "usage: kiln train --data DIR --out MODEL_DIR [options]\n\n"
            "Trains an EfficientNet on a prepared dataset (kiln prepare) and writes the model\n"
            "package to MODEL_DIR, with checkpoints in MODEL_DIR/checkpoint/.\n\noptions:\n"
            "  --config FILE          YAML config (train.*, augment.*, data.workers); every\n"
            "                         key defaults as in examples/config.yaml\n"
            "  --device auto|cpu|cuda where to train (default auto: the GPU when usable)\n"
            "  --precision fp32|bf16  train.precision: bf16 is the GPU's mixed precision\n"
            "                         (bf16 NHWC activations, fp32 master weights; with\n"
            "                         --device auto on a CPU it falls back to fp32)\n"
            "  --cuda-graphs          on the GPU, run each step after the first as one CUDA\n"
            "                         graph (one launch per step; default off; also\n"
            "                         KILN_CUDA_GRAPHS=1)\n"
            "  --init-weights FILE    pretrained safetensors; the head is re-initialised\n"
            "  --resume               continue from MODEL_DIR/checkpoint\n"
            "  --epochs 10 --batch-size 32 --lr 0.001   override train.* of the config\n"
            "  --threads N            compute threads (default: every core)\n"
            "  --seed N               seed of init, order, augmentation (default 42)\n"
            "  --warmup-epochs N      linear warmup before the cosine decay (default 1)\n"
            "  --patience 0           stop after N epochs without a better val accuracy\n"
            "                         (0: never stop early)\n"
            "  --mlflow URI           tracking server (default $MLFLOW_TRACKING_URI)\n"
            "  --experiment NAME      MLflow experiment (default kiln)\n"
            "  --run-name NAME        MLflow run name (default: the server picks one)\n");
}

typedef struct train_flags {
    const char *data, *out, *config, *device, *init, *mlflow, *experiment, *run_name;
    const char *epochs, *batch, *lr, *precision;
    int resume, threads, warmup, patience, cuda_graphs;
    unsigned long long seed;
} train_flags;

static int parse_flags(int argc, char **argv, train_flags *f)
{
    enum { O_DATA = 256, O_OUT, O_CONFIG, O_DEVICE, O_INIT, O_RESUME, O_EPOCHS, O_BATCH, O_LR,
           O_THREADS, O_SEED, O_MLFLOW, O_EXP, O_RUN, O_WARMUP, O_PATIENCE, O_GRAPHS,
           O_PRECISION, O_HELP };
    static const struct option opts[] = {
        {"data", 1, 0, O_DATA},       {"out", 1, 0, O_OUT},         {"config", 1, 0, O_CONFIG},
        {"device", 1, 0, O_DEVICE},   {"init-weights", 1, 0, O_INIT}, {"resume", 0, 0, O_RESUME},
        {"epochs", 1, 0, O_EPOCHS},   {"batch-size", 1, 0, O_BATCH}, {"lr", 1, 0, O_LR},
        {"threads", 1, 0, O_THREADS}, {"seed", 1, 0, O_SEED},      {"mlflow", 1, 0, O_MLFLOW},
        {"experiment", 1, 0, O_EXP},  {"run-name", 1, 0, O_RUN},   {"warmup-epochs", 1, 0, O_WARMUP},
        {"patience", 1, 0, O_PATIENCE}, {"cuda-graphs", 0, 0, O_GRAPHS},
        {"precision", 1, 0, O_PRECISION},
        {"help", 0, 0, O_HELP},       {0, 0, 0, 0}};
    int c, rc = 0;
    char *end;
    optind = 1;
    opterr = 0;
    while (rc == 0 && (c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case O_DATA: f->data = optarg; break;
        case O_OUT: f->out = optarg; break;
        case O_CONFIG: f->config = optarg; break;
        case O_DEVICE: f->device = optarg; break;
        case O_INIT: f->init = optarg; break;
        case O_RESUME: f->resume = 1; break;
        case O_GRAPHS: f->cuda_graphs = 1; break;
        case O_EPOCHS: f->epochs = optarg; break;
        case O_BATCH: f->batch = optarg; break;
        case O_LR: f->lr = optarg; break;
        case O_PRECISION: f->precision = optarg; break;
        case O_THREADS:
            rc = kiln_cli_int_flag("train", "--threads", optarg, 1, 1000000, &f->threads);
            break;
        case O_WARMUP:
            rc = kiln_cli_int_flag("train", "--warmup-epochs", optarg, 0, 1000000, &f->warmup);
            break;
        case O_PATIENCE:
            rc = kiln_cli_int_flag("train", "--patience", optarg, 0, 1000000, &f->patience);
            break;
        case O_SEED:
            f->seed = strtoull(optarg, &end, 10);
            if (!*optarg || *end || optarg[0] == '-') {
                fprintf(stderr, "kiln train: --seed: expected a non-negative integer, got '%s'\n",
                        optarg);
                rc = 2;
            }
            break;
        case O_MLFLOW: f->mlflow = optarg; break;
        case O_EXP: f->experiment = optarg; break;
        case O_RUN: f->run_name = optarg; break;
        case 'h': case O_HELP: return 1;
        case ':':
            fprintf(stderr, "kiln train: %s needs a value\n", argv[optind - 1]);
            rc = 2;
            break;
        default:
            fprintf(stderr, "kiln train: unknown option '%s'\n", argv[optind - 1]);
            rc = 2;
        }
    }
    if (rc == 0 && optind < argc) {
        fprintf(stderr, "kiln train: unexpected argument '%s'\n", argv[optind]);
        rc = 2;
    } else if (rc == 0 && (!f->data || !f->out)) {
        fprintf(stderr, "kiln train: --data and --out are required\n");
        rc = 2;
    } else if (rc == 0 && f->device && strcmp(f->device, "auto") && strcmp(f->device, "cpu") &&
               strcmp(f->device, "cuda")) {
        fprintf(stderr, "kiln train: --device: expected auto, cpu or cuda, got '%s'\n", f->device);
        rc = 2;
    }
    return rc;
}

/* Config file, then flag overrides, then validation. */
static int build_config(const train_flags *f, kiln_config *cfg, kiln_err *err)
{
    kiln_config_defaults(cfg);
    int rc = f->config ? kiln_config_load_file(cfg, f->config, err) : KILN_OK;
    const char *keys[] = {"train.epochs", "train.batch_size", "train.learning_rate",
                          "train.precision"};
    const char *vals[] = {f->epochs, f->batch, f->lr, f->precision};
    const char *names[] = {"--epochs", "--batch-size", "--lr", "--precision"};
    for (int i = 0; rc == KILN_OK && i < 4; i++)
        if (vals[i] && (rc = kiln_config_set(cfg, keys[i], vals[i], err)) != KILN_OK)
            kiln_err_wrap(err, "%s", names[i]);
    return rc == KILN_OK ? kiln_config_validate(cfg, err) : rc;
}

/* --device cuda without a usable GPU fails here, before a run is started;
 * auto is decided (and logged) by kiln_nn_backend_open in the trainer. */
static int resolve_device(const char *device, const kiln_logger *log)
{
    kiln_gpu_info gpu;
    kiln_err err = {0};
    if (device && strcmp(device, "cuda") == 0 && kiln_gpu_probe(&gpu, &err) != KILN_OK) {
        kiln_log_error(log, "kiln train: --device cuda: %s; use --device cpu (or auto)", err.msg);
        return 1;
    }
    return 0;
}

static void show_progress(void *ctx, const kiln_train_progress *p)
{
    (void)ctx;
    long eta = (long)(p->eta_s + 0.5);
    fprintf(stderr, "\repoch %d/%d  batch %u/%u  loss %.4f  %.1f img/s  ETA %ld:%02ld:%02ld   ",
            p->epoch, p->epochs, p->batch, p->batches, p->loss, p->images_per_s, eta / 3600,
            eta / 60 % 60, eta % 60);
    if (p->batch == p->batches)
        fputc('\r', stderr);
    fflush(stderr);
}

static kiln_mlflow_client *make_client(const char *uri, const kiln_logger *log, int *rc)
{
    kiln_mlflow_config mc;
    kiln_err err = {0};
    kiln_mlflow_config_default(&mc);
    *rc = 0;
    if (kiln_mlflow_config_from_env(&mc, &err) != KILN_OK ||
        (uri && kiln_mlflow_config_set(&mc, "tracking-uri", uri, &err) != KILN_OK)) {
        kiln_log_error(log, "kiln train: %s", err.msg);
        *rc = 2;
        return NULL;
    }
    if (!mc.tracking_uri[0])
        return NULL;
    kiln_mlflow_client *c = kiln_mlflow_client_new(&mc, log, &err);
    if (!c) {
        kiln_log_error(log, "kiln train: MLflow: %s", err.msg);
        *rc = 2;
    }
    return c;
}

int kiln_cmd_train(int argc, char **argv, const kiln_logger *log)
{
    train_flags f = {.seed = 42, .warmup = 1};
    kiln_train_opts o;
    kiln_train_result res;
    kiln_err err = {0};
    int rc = parse_flags(argc, argv, &f);
    if (rc != 0) {
        train_usage(rc == 1 ? stdout : stderr);
        return rc == 1 ? 0 : 2;
    }
    kiln_train_opts_default(&o);
    if (build_config(&f, &o.cfg, &err) != KILN_OK) {
        kiln_log_error(log, "kiln train: %s", err.msg);
        return 2;
    }
    if ((rc = resolve_device(f.device, log)) != 0)
        return rc;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    o.data_dir = f.data;
    o.out_dir = f.out;
    o.device = f.device ? f.device : "auto";
    o.init_weights = f.init;
    o.resume = f.resume;
    const char *graphs_env = getenv("KILN_CUDA_GRAPHS");
    o.cuda_graphs = f.cuda_graphs || (graphs_env && strcmp(graphs_env, "1") == 0);
    o.threads = f.threads ? f.threads : (cores > 0 ? (int)cores : 1);
    o.seed = f.seed;
    o.warmup_epochs = f.warmup;
    o.patience = f.patience;
    o.experiment = f.experiment;
    o.run_name = f.run_name;
    o.stop = &stop_requested;
    o.log = log;
    if (isatty(STDERR_FILENO))
        o.on_progress = show_progress;
    o.mlflow = make_client(f.mlflow, log, &rc);
    if (rc != 0)
        return rc;
    kiln_stop_signals_install(on_signal);
    rc = kiln_train(&o, &res, &err);
    kiln_mlflow_client_free(o.mlflow);
    if (o.on_progress)
        fprintf(stderr, "\n");
    if (res.run_id[0])
        printf("mlflow run id: %s\n", res.run_id);
    if (rc == KILN_ECANCELED) {
        kiln_log_error(log, "kiln train: interrupted: %s", err.msg);
        return 130;
    }
    if (rc != KILN_OK) {
        kiln_log_error(log, "kiln train: %s", err.msg);
        return kiln_code_exit_status(rc);
    }
    printf("trained %d epochs; best val accuracy %.4f at epoch %d%s; model package in %s\n",
           res.epochs_done, res.best_val_accuracy, res.best_epoch,
           res.early_stopped ? " (early stop)" : "", f.out);
    return 0;
}
