/* dataset.h: labelled image sets for `vit eval` (and `vit finetune`): an ImageFolder directory
 * (one subfolder per class, files *.png|*.jpg|*.jpeg) or an IDX pair (MNIST format, optionally
 * gzip'd).  Every sample becomes the same (3, out_h, out_w) tensor the server would build:
 * files go through vit_image_load, IDX pixels through vit_image_to_tensor (gray replicated).
 *
 * Class matching: with the model's labels given, each folder is matched to a label by name
 * (case, spaces and punctuation ignored: "T-shirt_top" == "T-shirt/top"; for comma-separated
 * labels such as ImageNet's "tench, Tinca tinca" any one of the names matches too) or by index
 * ("0".."C-1"); with by_order, the sorted folders are classes 0..n-1 (torchvision's ImageFolder
 * order, e.g. ImageNet synset folders).  Without labels (labels == NULL), the sorted folder
 * names are the classes.  IDX labels are class indices. */
#ifndef VIT_CLI_DATASET_H
#define VIT_CLI_DATASET_H
#include <stddef.h>
#include <stdint.h>
#include "vit.h"

typedef struct cli_dataset cli_dataset;

/* Open path (directory: ImageFolder; file: IDX images, labels from labels_path or found beside
 * it by replacing "images"->"labels" and "idx3"->"idx1" in the file name, with or without .gz).
 * Returns VIT_OK or an error with a one-line message in err. */
vit_status cli_dataset_open(const char *path, const char *labels_path, char *const *labels,
                            int num_labels, int by_order, cli_dataset **out, char *err,
                            size_t errlen);
void cli_dataset_free(cli_dataset *d);

const char *cli_dataset_kind(const cli_dataset *d);   /* "ImageFolder" or "IDX" */
int cli_dataset_count(const cli_dataset *d);
int cli_dataset_num_classes(const cli_dataset *d);     /* num_labels, or folders without labels */
/* class name: the folder name (ImageFolder) or the index as text (IDX); for the no-label mode
 * this is the class's label */
const char *cli_dataset_class_name(const cli_dataset *d, int c);
int cli_dataset_label(const cli_dataset *d, int i);    /* class index of sample i */
/* a printable name of sample i: the file path, or "FILE#index" for IDX */
const char *cli_dataset_sample_name(const cli_dataset *d, int i, char *buf, size_t n);
/* Keep n evenly spaced samples (deterministic); n <= 0 or >= count keeps all. */
void cli_dataset_limit(cli_dataset *d, int n);
/* Sample i -> out (3, pp->out_h, pp->out_w). */
vit_status cli_dataset_tensor(const cli_dataset *d, int i, const vit_preprocess *pp,
                              uint64_t max_pixels, float *out, char *err, size_t errlen);

#endif
