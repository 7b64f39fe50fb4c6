#include <stdio.h>

int main(void) {
  printf("hello from a static C binary built by kiln\n");
  return 0;
}
