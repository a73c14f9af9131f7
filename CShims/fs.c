// File-system wrappers the Swift side cannot reach by itself.

#include "CShims.h"

#include <errno.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

int cshim_mark_top_directory(int fd) {
    int flags = 0;
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0) return -errno;
    if (flags & FS_TOPDIR_FL) return 0;
    flags |= FS_TOPDIR_FL;
    if (ioctl(fd, FS_IOC_SETFLAGS, &flags) < 0) return -errno;
    return 0;
}

int cshim_is_top_directory(int fd) {
    int flags = 0;
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0) return -errno;
    return (flags & FS_TOPDIR_FL) ? 1 : 0;
}
