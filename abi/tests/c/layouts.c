/* layouts.c: prints, on every rank, what MPI_Pack makes of a global array through darray and
 * subarray types and the envelope of each, so that the same binary's output under MPICH and
 * under onecopy can be compared line by line. Run on 4 ranks. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static void show(const char *what, MPI_Datatype t, const int *global, int rank) {
    int size = 0, packed = 0, pos = 0, ni, na, nt, comb;
    MPI_Aint lb, extent;
    MPI_Type_commit(&t);
    MPI_Type_size(t, &size);
    MPI_Type_get_extent(t, &lb, &extent);
    MPI_Type_get_envelope(t, &ni, &na, &nt, &comb);
    MPI_Pack_size(1, t, MPI_COMM_WORLD, &packed);
    int *out = malloc(packed + 4);
    MPI_Pack(global, 1, t, out, packed, &pos, MPI_COMM_WORLD);
    printf("%s rank %d: size %d lb %ld extent %ld envelope %d/%d/%d/%d:", what, rank, size, (long)lb, (long)extent, ni, na, nt, comb);
    for (int i = 0; i < size / 4; i++) printf(" %d", out[i]);
    printf("\n");
    free(out);
    MPI_Type_free(&t);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, nprocs;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nprocs);
    int global[7 * 9 * 2];
    for (int i = 0; i < 7 * 9 * 2; i++) global[i] = i;
    int gs[2] = {7, 9}, ps[2] = {2, 2};
    int cases[][4] = {
        {MPI_DISTRIBUTE_BLOCK, MPI_DISTRIBUTE_BLOCK, MPI_DISTRIBUTE_DFLT_DARG, MPI_DISTRIBUTE_DFLT_DARG},
        {MPI_DISTRIBUTE_CYCLIC, MPI_DISTRIBUTE_BLOCK, 2, MPI_DISTRIBUTE_DFLT_DARG},
        {MPI_DISTRIBUTE_CYCLIC, MPI_DISTRIBUTE_CYCLIC, MPI_DISTRIBUTE_DFLT_DARG, 3},
    };
    for (int r = 0; r < 4; r++) {
        for (int c = 0; c < 3; c++) {
            for (int order = 0; order < 2; order++) {
                int d[2] = {cases[c][0], cases[c][1]}, a[2] = {cases[c][2], cases[c][3]};
                MPI_Datatype t;
                MPI_Type_create_darray(4, r, 2, gs, d, a, ps, order ? MPI_ORDER_FORTRAN : MPI_ORDER_C, MPI_INT, &t);
                char what[64];
                snprintf(what, sizeof what, "darray case %d order %d of rank %d", c, order, r);
                show(what, t, global, rank);
            }
        }
    }
    int ss[3] = {3, 7, 6}, sub[3] = {2, 3, 2}, st[3] = {1, 2, 3};
    for (int order = 0; order < 2; order++) {
        MPI_Datatype t;
        MPI_Type_create_subarray(3, ss, sub, st, order ? MPI_ORDER_FORTRAN : MPI_ORDER_C, MPI_INT, &t);
        show(order ? "subarray fortran" : "subarray c", t, global, rank);
    }
    (void)nprocs;
    MPI_Finalize();
    return 0;
}
