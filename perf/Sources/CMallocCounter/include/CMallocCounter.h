// CMallocCounter: counts heap allocations of the whole process, for allocation budgets in benchmarks.
#ifndef CMALLOCCOUNTER_H
#define CMALLOCCOUNTER_H

#include <stdint.h>

/// Number of malloc, calloc, realloc, posix_memalign, aligned_alloc and memalign calls so far.
uint64_t cmalloc_counter_allocations(void);

#endif
