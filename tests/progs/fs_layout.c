/* Prints sizeof/offsetof of the file-system structs, for
 * tests/test_fs_structs.py to compare with abi/fs_structs.py. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>

struct linux_dirent64 {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

#define F(s, f) printf(#s " " #f " %zu\n", offsetof(struct s, f))
#define Z(s) printf(#s " sizeof %zu\n", sizeof(struct s))

int main(void) {
    Z(stat); F(stat, st_dev); F(stat, st_ino); F(stat, st_nlink); F(stat, st_mode); F(stat, st_uid);
    F(stat, st_gid); F(stat, st_rdev); F(stat, st_size); F(stat, st_blksize); F(stat, st_blocks);
    F(stat, st_atime); F(stat, st_mtime); F(stat, st_ctime);
    Z(statx); F(statx, stx_mask); F(statx, stx_blksize); F(statx, stx_attributes); F(statx, stx_nlink);
    F(statx, stx_uid); F(statx, stx_gid); F(statx, stx_mode); F(statx, stx_ino); F(statx, stx_size);
    F(statx, stx_blocks); F(statx, stx_attributes_mask); F(statx, stx_atime); F(statx, stx_btime);
    F(statx, stx_ctime); F(statx, stx_mtime); F(statx, stx_rdev_major); F(statx, stx_rdev_minor);
    F(statx, stx_dev_major); F(statx, stx_dev_minor); F(statx, stx_mnt_id);
    Z(statfs); F(statfs, f_type); F(statfs, f_bsize); F(statfs, f_blocks); F(statfs, f_bfree);
    F(statfs, f_bavail); F(statfs, f_files); F(statfs, f_ffree); F(statfs, f_fsid); F(statfs, f_namelen);
    F(statfs, f_frsize); F(statfs, f_flags);
    Z(linux_dirent64); F(linux_dirent64, d_ino); F(linux_dirent64, d_off); F(linux_dirent64, d_reclen);
    F(linux_dirent64, d_type); F(linux_dirent64, d_name);
    Z(flock); F(flock, l_type); F(flock, l_whence); F(flock, l_start); F(flock, l_len); F(flock, l_pid);
    Z(timespec);
    return 0;
}
