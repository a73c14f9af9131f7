#ifndef CSHIMS_H
#define CSHIMS_H
#include <stdint.h>
int cshim_placeholder(void);
#endif
