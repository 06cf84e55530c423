/* tests/support/trainfix.h — fixtures shared by the kiln_train tests: a small
 * prepared dataset (32x32, 3 classes), quick training options, and an MLflow
 * client without retries for a test's kiln-tracking. */
#ifndef KILN_TEST_TRAINFIX_H
#define KILN_TEST_TRAINFIX_H

#include <stdint.h>

#include "mlflow/mlflow.h"
#include "support/dsbuild.h"
#include "support/trackserver.h"
#include "train/train.h"

/* root/data with `train` and `val` images and no test split; pixel NULL:
 * kt_ds_default_pixel. The caller frees the path. */
char *kt_train_dataset(const char *root, uint32_t train, uint32_t val, kt_ds_pixel_fn pixel);
/* A kt_ds_pixel_fn: solid colours with noise, class k bright in channel k. */
uint8_t kt_colour_pixel(void *ctx, uint32_t index, int y, int x, int c, int size);
/* Defaults, then 2 threads, 1 loader worker, batch 8, lr 0.01, seed 7. */
void kt_train_tiny_opts(kiln_train_opts *o, const char *data, const char *out, int epochs);
/* A client for the server (fails the test when it cannot be made). */
kiln_mlflow_client *kt_train_client(const kt_trackserver *s);

#endif
