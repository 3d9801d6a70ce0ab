// Where the time of one W5.shm.oneshot round goes, phase by phase, in C:
// create a 256 MiB memfd, a forked child maps it with MAP_POPULATE (the
// kernel allocates and zeroes 65,536 pages) and copies 256 MiB in, exits;
// the parent maps it, faults in a huge-page destination, copies out,
// releases. Prints milliseconds per phase for 5 rounds.
//
//   gcc -O2 -o shm_phases Benchmarks/c/shm_oneshot_phases.c && ./shm_phases
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(void){
  const size_t size=256u<<20;
  unsigned char *src = malloc(size); memset(src, 9, size);
  for(int r=0;r<5;r++){
    double t0=now();
    int fd=memfd_create("x",MFD_CLOEXEC); ftruncate(fd,size);
    double t1=now();
    int pfd[2]; pipe(pfd);
    pid_t pid=fork();
    if(pid==0){
      double a=now();
      unsigned char*c=mmap(NULL,size,PROT_READ|PROT_WRITE,MAP_SHARED|MAP_POPULATE,fd,0);
      double b=now();
      memcpy(c,src,size);
      double d=now();
      double m[2]={b-a,d-b}; write(pfd[1],m,sizeof m);
      _exit(0);
    }
    double m[2]; read(pfd[0],m,sizeof m);
    double t2=now();
    int st; waitpid(pid,&st,0);
    double t3=now();
    unsigned char *shared=mmap(NULL,size,PROT_READ,MAP_SHARED|MAP_POPULATE,fd,0);
    double t4=now();
    unsigned char*copy=aligned_alloc(2u<<20,size); madvise(copy,size,MADV_HUGEPAGE);
    memset(copy,0,size);
    double t5=now();
    memcpy(copy,shared,size);
    double t6=now();
    munmap(shared,size); close(fd);
    double t7=now();
    free(copy);
    double t8=now();
    printf("create %.1f | child populate %.1f fill %.1f | exit %.1f | parent map %.1f | dest fault %.1f | copy %.1f | release %.1f | free %.1f | total %.1f ms\n",
      (t1-t0)*1e3, m[0]*1e3, m[1]*1e3, (t3-t2)*1e3, (t4-t3)*1e3, (t5-t4)*1e3, (t6-t5)*1e3, (t7-t6)*1e3, (t8-t7)*1e3, (t8-t0)*1e3);
  }
}
