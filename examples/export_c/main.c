/* A few SGD steps of the MLP whose loss and gradients export_mlp.py exported as libmlp.so.
 *
 *     main BUILD_DIR    (BUILD_DIR holds mlp.state.bin with the initial weights)
 *
 * No Python, no LLVM: the library needs only libc (it links no BLAS; see mlp.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlp.h"

enum { BATCH = 32, FEATURES = 64, HIDDEN = 32, CLASSES = 10, STEPS = 8 };
static const float LR = 0.5f;

/* The generator export_mlp.py uses: 64-bit LCG, top 24 bits as a float in [0, 1). */
static uint64_t lcg_state = 42;
static float uniform(void) {
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)(lcg_state >> 40) / (float)(1 << 24);
}

static int read_state(const char* dir, void* dst, long offset, size_t bytes) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, MLP_STATE_FILE);
    FILE* f = fopen(path, "rb");
    if (!f) return -1;
    int ok = fseek(f, offset, SEEK_SET) == 0 && fread(dst, 1, bytes, f) == bytes;
    fclose(f);
    return ok ? 0 : -1;
}

static void sgd(float* w, const float* g, size_t n) {
    for (size_t i = 0; i < n; i++) w[i] -= LR * g[i];
}

int main(int argc, char** argv) {
    const char* dir = argc > 1 ? argv[1] : ".";
    static float w1[FEATURES * HIDDEN], b1[HIDDEN], w2[HIDDEN * CLASSES], b2[CLASSES];
    static float gw1[FEATURES * HIDDEN], gb1[HIDDEN], gw2[HIDDEN * CLASSES], gb2[CLASSES];
    static float x[BATCH * FEATURES];
    static int32_t labels[BATCH];
    if (read_state(dir, w1, MLP_STATE_OFFSET_w1, MLP_STATE_BYTES_w1)
        || read_state(dir, b1, MLP_STATE_OFFSET_b1, MLP_STATE_BYTES_b1)
        || read_state(dir, w2, MLP_STATE_OFFSET_w2, MLP_STATE_BYTES_w2)
        || read_state(dir, b2, MLP_STATE_OFFSET_b2, MLP_STATE_BYTES_b2)) {
        fprintf(stderr, "cannot read %s/%s\n", dir, MLP_STATE_FILE);
        return 1;
    }
    for (int i = 0; i < BATCH; i++) {
        labels[i] = i % CLASSES;
        for (int j = 0; j < FEATURES; j++)
            x[i * FEATURES + j] = (uniform() - 0.5f) + (j % CLASSES == labels[i] ? 1.0f : 0.0f);
    }
    size_t workspace_bytes = mlp_workspace_size();
    void* workspace = workspace_bytes ? malloc(workspace_bytes) : NULL;
    if (workspace_bytes && !workspace) return 1;

    for (int step = 0; step < STEPS; step++) {
        float loss;
        int rc = mlp(x, BATCH, FEATURES, labels, BATCH, w1, FEATURES, HIDDEN, b1, HIDDEN, w2, HIDDEN, CLASSES,
                     b2, CLASSES, &loss, gw1, FEATURES, HIDDEN, gb1, HIDDEN, gw2, HIDDEN, CLASSES, gb2, CLASSES,
                     workspace, workspace_bytes);
        if (rc != MLP_OK) {
            fprintf(stderr, "mlp failed: %s\n", mlp_strerror(rc));
            return 1;
        }
        printf("step %d: loss %.6f\n", step, loss);
        sgd(w1, gw1, FEATURES * HIDDEN);
        sgd(b1, gb1, HIDDEN);
        sgd(w2, gw2, HIDDEN * CLASSES);
        sgd(b2, gb2, CLASSES);
    }
    /* The library checks every dim: a batch it was not compiled for is an error, not a crash. */
    float loss;
    int rc = mlp(x, BATCH - 1, FEATURES, labels, BATCH - 1, w1, FEATURES, HIDDEN, b1, HIDDEN, w2, HIDDEN, CLASSES,
                 b2, CLASSES, &loss, gw1, FEATURES, HIDDEN, gb1, HIDDEN, gw2, HIDDEN, CLASSES, gb2, CLASSES,
                 workspace, workspace_bytes);
    printf("batch of %d: %s (code %d)\n", BATCH - 1, mlp_strerror(rc), rc);
    free(workspace);
    return rc == MLP_ERR_DIMS ? 0 : 1;
}
