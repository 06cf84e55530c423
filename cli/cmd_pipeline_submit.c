/* kiln pipeline submit / schedule: generate the pipeline for the training
 * image, upload it (or a new version) to Kubeflow Pipelines, find or create
 * the experiment, start a run (or a recurring run), print its UI URL; with
 * --wait follow the run to its end. Flags are seed 004's
 * run_train_pipeline.py flags where it has them. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_pipeline.h"
#include "kfp/client.h"
#include "kfp/ir.h"

/* Flags that set a pipeline parameter: flag name -> parameter. */
static const struct { const char *flag, *param; } param_flags[] = {
    {"minio-endpoint", "minio_endpoint"},
    {"source-data-bucket", "source_data_bucket"},
    {"source-data-object", "source_data_object"},
    {"destination-model-bucket", "destination_model_bucket"},
    {"destination-model-name", "destination_model_name"},
    {"mlflow-tracking-uri", "mlflow_tracking_uri"},
    {"mlflow-experiment-name", "mlflow_experiment_name"},
    {"registered-model-name", "registered_model_name"},
    {"epochs", "epochs"},
    {"batch-size", "batch_size"},
    {"image-size", "image_size"},
    {"model-variant", "model_variant"},
    {"learning-rate", "learning_rate"},
    {"min-accuracy-gain", "min_accuracy_gain"},
};
#define N_PARAM_FLAGS (sizeof param_flags / sizeof param_flags[0])

enum { O_HOST = 1000, O_IMAGE, O_EXPERIMENT, O_WAIT, O_TOKEN, O_COOKIE, O_NAMESPACE, O_RUN_NAME,
       O_PIPELINE, O_PARAM, O_POLL, O_TIMEOUT, O_CRON, O_CONCURRENCY, O_S3_SECRET,
       O_MLFLOW_SECRET, O_SA, O_INSECURE, O_CREDENTIAL, O_HELP, O_PARAM_FLAG = 2000 };

typedef struct submit_flags {
    const char *host, *image, *experiment, *token, *cookie, *ns, *run_name, *pipeline, *cron;
    const char *s3_secret, *mlflow_secret, *service_account;
    int wait, poll_s, timeout_s, concurrency, insecure;
    int n_params;
    const char *param_name[64], *param_value[64];
} submit_flags;

static void submit_usage(FILE *out, int schedule)
{
    fprintf(out,
            "usage: kiln pipeline %s --kubeflow-host URL [options]\n\n"
            "%s\n\noptions:\n"
            "  --kubeflow-host URL            KFP API endpoint (default http://localhost/pipeline)\n"
            "  --training-image IMG           image of every step (default %s)\n"
            "  --experiment NAME              KFP experiment, created if needed\n"
            "                                 (default \"kiln training\")\n"
            "  --pipeline-name NAME           pipeline in KFP (default %s); uploaded the first\n"
            "                                 time, a new version afterwards\n"
            "  --run-name NAME                display name (default: kiln-train <UTC time>)\n"
            "  --namespace NS                 Kubeflow profile namespace (multi-user)\n"
            "  --token T                      Authorization: Bearer T (default $KFP_TOKEN)\n"
            "  --cookie NAME=VALUE            session cookie, e.g. authservice_session=...\n"
            "  --insecure-tls                 no certificate checks (self-signed gateways)\n"
            "  --service-account SA           run as this Kubernetes service account\n"
            "  --s3-secret NAME               Secret with AWS_ACCESS_KEY_ID and\n"
            "                                 AWS_SECRET_ACCESS_KEY (default kiln-s3-credentials)\n"
            "  --mlflow-secret NAME           Secret with MLFLOW_TRACKING_USERNAME / _PASSWORD\n"
            "                                 (default kiln-mlflow-credentials)\n",
            schedule ? "schedule --cron EXPR" : "submit", schedule
                ? "Uploads kiln's pipeline to Kubeflow Pipelines and creates a recurring run."
                : "Uploads kiln's pipeline to Kubeflow Pipelines (or a new version of it) and\n"
                  "starts a run through the REST API v2beta1; prints the run's page.",
            KILN_KFP_DEFAULT_IMAGE, KILN_KFP_PIPELINE_NAME);
    if (schedule)
        fprintf(out, "  --cron EXPR                    when: crontab's 5 fields or KFP's 6 (seconds\n"
                     "                                 first), e.g. \"0 3 * * *\" (required)\n"
                     "  --max-concurrency N            runs at once (default 1)\n");
    else
        fprintf(out, "  --wait                         follow the run until it ends; exit 0 only\n"
                     "                                 when it SUCCEEDED\n"
                     "  --poll-interval S              seconds between checks (default 10)\n"
                     "  --timeout S                    give up waiting after S s (default 0: never)\n");
    fprintf(out, "\npipeline parameters (default: the pipeline's own, `kiln pipeline compile`):\n"
                 "  --minio-endpoint HOST:PORT     (minio-service.kubeflow:9000)\n"
                 "  --source-data-bucket B         (ml-data)\n"
                 "  --source-data-object KEY       (dry-wet-data.zip)\n"
                 "  --destination-model-bucket B   (ml-models)\n"
                 "  --destination-model-name NAME  (dry-wet-road-classifier)\n"
                 "  --mlflow-tracking-uri URI      (http://mlflow-server.kubeflow.svc:5000)\n"
                 "  --mlflow-experiment-name NAME  (dry-wet-road-classifier)\n"
                 "  --registered-model-name NAME   (dry-wet-road-classifier)\n"
                 "  --epochs N (10) --batch-size N (32) --image-size N (224)\n"
                 "  --model-variant b0|b1|b2|b3 (b0) --learning-rate X (0.001)\n"
                 "  --min-accuracy-gain X          promotion gate margin (0.0)\n"
                 "  --param NAME=VALUE             any parameter by its pipeline name\n\n"
                 "MinIO and MLflow credentials are not parameters: they come from the Secrets\n"
                 "above (kubectl -n <namespace> create secret generic kiln-s3-credentials\n"
                 "--from-literal=AWS_ACCESS_KEY_ID=minio --from-literal=AWS_SECRET_ACCESS_KEY=...).\n");
}

static int add_param(submit_flags *f, const char *name, const char *value)
{
    if (f->n_params == 64) {
        fprintf(stderr, "kiln pipeline: too many parameters\n");
        return 2;
    }
    f->param_name[f->n_params] = name;
    f->param_value[f->n_params++] = value;
    return 0;
}

static int parse(int argc, char **argv, int schedule, submit_flags *f)
{
    struct option opts[64] = {
        {"kubeflow-host", 1, 0, O_HOST},      {"training-image", 1, 0, O_IMAGE},
        {"experiment", 1, 0, O_EXPERIMENT},   {"wait", 0, 0, O_WAIT},
        {"token", 1, 0, O_TOKEN},             {"cookie", 1, 0, O_COOKIE},
        {"namespace", 1, 0, O_NAMESPACE},     {"run-name", 1, 0, O_RUN_NAME},
        {"pipeline-name", 1, 0, O_PIPELINE},  {"param", 1, 0, O_PARAM},
        {"poll-interval", 1, 0, O_POLL},      {"timeout", 1, 0, O_TIMEOUT},
        {"cron", 1, 0, O_CRON},               {"max-concurrency", 1, 0, O_CONCURRENCY},
        {"s3-secret", 1, 0, O_S3_SECRET},     {"mlflow-secret", 1, 0, O_MLFLOW_SECRET},
        {"service-account", 1, 0, O_SA},      {"insecure-tls", 0, 0, O_INSECURE},
        {"minio-access-key", 1, 0, O_CREDENTIAL}, {"minio-secret-key", 1, 0, O_CREDENTIAL},
        {"help", 0, 0, O_HELP}};
    int n = 21, c, rc = 0;
    const char *cmd = schedule ? "schedule" : "submit";
    for (size_t i = 0; i < N_PARAM_FLAGS; i++)
        opts[n++] = (struct option){param_flags[i].flag, 1, 0, O_PARAM_FLAG + (int)i};
    opts[n] = (struct option){0, 0, 0, 0};
    memset(f, 0, sizeof *f);
    f->host = "http://localhost/pipeline";
    f->experiment = "kiln training";
    f->pipeline = KILN_KFP_PIPELINE_NAME;
    f->poll_s = 10;
    f->concurrency = 1;
    f->token = getenv("KFP_TOKEN");
    optind = 1;
    opterr = 0;
    while (rc == 0 && (c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case O_HOST: f->host = optarg; break;
        case O_IMAGE: f->image = optarg; break;
        case O_EXPERIMENT: f->experiment = optarg; break;
        case O_WAIT: f->wait = 1; break;
        case O_TOKEN: f->token = optarg; break;
        case O_COOKIE: f->cookie = optarg; break;
        case O_NAMESPACE: f->ns = optarg; break;
        case O_RUN_NAME: f->run_name = optarg; break;
        case O_PIPELINE: f->pipeline = optarg; break;
        case O_CRON: f->cron = optarg; break;
        case O_S3_SECRET: f->s3_secret = optarg; break;
        case O_MLFLOW_SECRET: f->mlflow_secret = optarg; break;
        case O_SA: f->service_account = optarg; break;
        case O_INSECURE: f->insecure = 1; break;
        case O_POLL: rc = kiln_cli_int_flag(cmd, "--poll-interval", optarg, 1, 3600, &f->poll_s); break;
        case O_TIMEOUT: rc = kiln_cli_int_flag(cmd, "--timeout", optarg, 0, 1 << 30, &f->timeout_s); break;
        case O_CONCURRENCY:
            rc = kiln_cli_int_flag(cmd, "--max-concurrency", optarg, 1, 10, &f->concurrency);
            break;
        case O_PARAM: {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                fprintf(stderr, "kiln pipeline %s: --param wants NAME=VALUE, got '%s'\n", cmd, optarg);
                rc = 2;
            } else {
                *eq = '\0';
                rc = add_param(f, optarg, eq + 1);
            }
            break;
        }
        case O_CREDENTIAL:
            fprintf(stderr, "kiln pipeline %s: %s: credentials are not pipeline parameters; put "
                    "them in the Kubernetes Secret (--s3-secret, default kiln-s3-credentials)\n",
                    cmd, argv[optind - 2]);
            rc = 2;
            break;
        case O_HELP: case 'h': return 1;
        case ':':
            fprintf(stderr, "kiln pipeline %s: %s needs a value\n", cmd, argv[optind - 1]);
            rc = 2;
            break;
        case '?':
            fprintf(stderr, "kiln pipeline %s: unknown option '%s'\n", cmd, argv[optind - 1]);
            rc = 2;
            break;
        default:
            rc = add_param(f, param_flags[c - O_PARAM_FLAG].param, optarg);
        }
    }
    if (rc == 0 && optind < argc) {
        fprintf(stderr, "kiln pipeline %s: unexpected argument '%s'\n", cmd, argv[optind]);
        rc = 2;
    }
    if (rc == 0 && schedule && !f->cron) {
        fprintf(stderr, "kiln pipeline schedule: --cron is required (e.g. --cron \"0 3 * * *\")\n");
        rc = 2;
    }
    return rc;
}

/* The run's parameters, typed as the pipeline declares them. */
static int build_params(const submit_flags *f, const cJSON *spec, cJSON *out, kiln_err *err)
{
    const cJSON *defs = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(spec, "root"),
                                         "inputDefinitions"), "parameters");
    for (int i = 0; i < f->n_params; i++) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(defs, f->param_name[i]), "parameterType");
        char what[300];
        snprintf(what, sizeof what, "parameter %s", f->param_name[i]);
        if (!cJSON_IsString(type))
            return kiln_err_set(err, KILN_EINVAL, "the pipeline has no parameter '%s'",
                                f->param_name[i]);
        cJSON *v = kiln_kfp_value_from_text(f->param_value[i], type->valuestring, what, err);
        if (!v)
            return KILN_EINVAL;
        cJSON_DeleteItemFromObjectCaseSensitive(out, f->param_name[i]);
        cJSON_AddItemToObject(out, f->param_name[i], v);
    }
    return KILN_OK;
}

/* Upload the pipeline, or a new version of the one of that name. */
static int upload(kiln_kfp_client *c, const submit_flags *f, const char *yaml, char *pid,
                  char *vid, const kiln_logger *log, kiln_err *err)
{
    char version[256], stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    int rc = kiln_kfp_pipeline_find(c, f->pipeline, pid, err);
    if (rc == KILN_ENOTFOUND) {
        kiln_err_clear(err);
        rc = kiln_kfp_pipeline_upload(c, f->pipeline, "kiln: train an image classifier from a "
                                      "zip in MinIO, register it in MLflow", yaml, strlen(yaml),
                                      pid, vid, err);
        if (rc == KILN_OK)
            kiln_log_info(log, "pipeline: uploaded %s (pipeline %s, version %s)", f->pipeline,
                          pid, vid);
        return rc;
    }
    if (rc != KILN_OK)
        return rc;
    /* KFP wants version names unique per pipeline: time and process id. */
    snprintf(version, sizeof version, "%s-%s-%x", f->pipeline, stamp, (unsigned)getpid() & 0xffff);
    rc = kiln_kfp_pipeline_upload_version(c, pid, version, yaml, strlen(yaml), vid, err);
    if (rc == KILN_OK)
        kiln_log_info(log, "pipeline: uploaded version %s of %s (%s)", version, f->pipeline, vid);
    return rc;
}

/* Poll until the run ends: 0 SUCCEEDED, 1 otherwise. */
static int wait_for(kiln_kfp_client *c, const submit_flags *f, const char *run_id,
                    const kiln_logger *log, kiln_err *err)
{
    char state[64], last[64] = "", msg[1024];
    time_t t0 = time(NULL);
    for (;;) {
        if (kiln_kfp_run_state(c, run_id, state, sizeof state, msg, sizeof msg, err) != KILN_OK)
            return -1;
        if (strcmp(state, last)) {
            printf("run %s: %s\n", run_id, state);
            snprintf(last, sizeof last, "%s", state);
        }
        if (kiln_kfp_state_final(state)) {
            if (msg[0])
                printf("run %s: %s\n", run_id, msg);
            return strcmp(state, "SUCCEEDED") && strcmp(state, "SKIPPED") ? 1 : 0;
        }
        if (f->timeout_s && time(NULL) - t0 >= f->timeout_s) {
            kiln_err_set(err, KILN_ECANCELED, "run %s still %s after %d s (--timeout)", run_id,
                         state, f->timeout_s);
            return -1;
        }
        kiln_log_debug(log, "run %s: %s", run_id, state);
        sleep((unsigned)f->poll_s);
    }
}

static int make_client(const submit_flags *f, const kiln_logger *log, kiln_kfp_client **c,
                       kiln_err *err)
{
    kiln_kfp_client_config cc;
    kiln_kfp_client_config_default(&cc);
    const char *src[] = {f->host, f->token, f->cookie, f->ns};
    char *dst[] = {cc.host, cc.token, cc.cookie, cc.namespace_};
    size_t sizes[] = {sizeof cc.host, sizeof cc.token, sizeof cc.cookie, sizeof cc.namespace_};
    for (int i = 0; i < 4; i++) {
        if (src[i] && strlen(src[i]) >= sizes[i])
            return kiln_err_set(err, KILN_ELIMIT, "a flag value is too long (%zu bytes)",
                                strlen(src[i]));
        snprintf(dst[i], sizes[i], "%s", src[i] ? src[i] : "");
    }
    cc.insecure_tls = f->insecure;
    *c = kiln_kfp_client_new(&cc, log, err);
    return *c ? KILN_OK : err->code;
}

int kiln_cmd_pipeline_submit(int argc, char **argv, const kiln_logger *log, int schedule)
{
    submit_flags f;
    kiln_err err = {0};
    kiln_kfp_client *c = NULL;
    cJSON *spec = NULL, *platform = NULL, *params = cJSON_CreateObject();
    char *yaml = NULL, *url = NULL, run_name[256], cron[256];
    char pid[KILN_KFP_ID_MAX], vid[KILN_KFP_ID_MAX], eid[KILN_KFP_ID_MAX], rid[KILN_KFP_ID_MAX];
    int created = 0, status = 1;
    const char *cmd = schedule ? "schedule" : "submit";
    int rc = parse(argc, argv, schedule, &f);
    if (rc != 0) {
        submit_usage(rc == 1 ? stdout : stderr, schedule);
        cJSON_Delete(params);
        return rc == 1 ? 0 : 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    kiln_kfp_gen_opts g = {.image = f.image, .s3_secret = f.s3_secret,
                           .mlflow_secret = f.mlflow_secret};
    if (kiln_kfp_generate(&g, &spec, &platform, &err) != KILN_OK ||
        kiln_kfp_generate_yaml(&g, &yaml, &err) != KILN_OK)
        goto fail;
    if (build_params(&f, spec, params, &err) != KILN_OK ||
        (schedule && kiln_kfp_cron_normalize(f.cron, cron, sizeof cron, &err) != KILN_OK) ||
        make_client(&f, log, &c, &err) != KILN_OK) {
        status = 2;
        goto fail;
    }
    if (upload(c, &f, yaml, pid, vid, log, &err) != KILN_OK ||
        kiln_kfp_experiment_get_or_create(c, f.experiment, eid, &created, &err) != KILN_OK)
        goto fail;
    kiln_log_info(log, "pipeline: experiment '%s' (%s)%s", f.experiment, eid,
                  created ? ", created" : "");
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(run_name, sizeof run_name, KILN_KFP_PIPELINE_NAME " %Y-%m-%d %H:%M:%S", &tm);
    kiln_kfp_run_spec rs = {.display_name = f.run_name ? f.run_name : run_name,
                            .experiment_id = eid, .pipeline_id = pid, .pipeline_version_id = vid,
                            .parameters = params, .service_account = f.service_account};
    if (schedule) {
        if (kiln_kfp_recurring_run_create(c, &rs, cron, f.concurrency, rid, &err) != KILN_OK)
            goto fail;
        printf("recurring run %s: '%s' on cron '%s' in experiment '%s'\n%s/#/recurringrun/details/%s\n",
               rid, rs.display_name, cron, f.experiment, f.host, rid);
        status = 0;
        goto done;
    }
    if (kiln_kfp_run_create(c, &rs, rid, &err) != KILN_OK)
        goto fail;
    url = kiln_kfp_run_url(c, rid);
    printf("run %s: '%s' in experiment '%s'\n%s\n", rid, rs.display_name, f.experiment,
           url ? url : "");
    status = 0;
    if (f.wait && (status = wait_for(c, &f, rid, log, &err)) < 0) {
        status = 1;
        goto fail;
    }
    goto done;
fail:
    kiln_log_error(log, "kiln pipeline %s: %s", cmd, err.msg);
done:
    kiln_kfp_client_free(c);
    cJSON_Delete(spec);
    cJSON_Delete(platform);
    cJSON_Delete(params);
    free(yaml);
    free(url);
    return status;
}
