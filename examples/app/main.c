/* A small application around an edgec-compiled model: classifies a fixed feature vector and prints
 * the class scores. The model's API comes from model.h (net_run, NET_*_SIZE); its code from libnet.a. */
#include <stdio.h>
#include "model.h"

int main(void) {
  static float features[NET_INPUT_features_SIZE];
  static float scores[NET_OUTPUT_scores_SIZE];
  net_inputs in = { features };
  net_outputs out = { scores };
  int i, best = 0;
  for (i = 0; i < NET_INPUT_features_SIZE; i++) features[i] = 0.25f * (float)(i - 3);
  if (net_run(&in, &out) != 0) return 1;
  for (i = 0; i < NET_OUTPUT_scores_SIZE; i++) {
    printf("class %d: %.4f\n", i, scores[i]);
    if (scores[i] > scores[best]) best = i;
  }
  printf("best: %d\n", best);
  return 0;
}
