/* topo.c: Cartesian, graph and distributed-graph topologies, MPI_Dims_create, and the neighbor
 * collectives. */
#include "check.h"

static void dims(void) {
    ck_begin("dims_create");
    int d2[2] = {0, 0};
    CHECK_MPI(MPI_Dims_create(12, 2, d2));
    CHECK(d2[0] == 4 && d2[1] == 3, "12 in 2 = %d x %d", d2[0], d2[1]);
    int d3[3] = {0, 2, 0};
    CHECK_MPI(MPI_Dims_create(16, 3, d3));
    CHECK(d3[1] == 2 && d3[0] * d3[2] == 8 && d3[0] >= d3[2], "16 in 3 with 2 fixed = %d %d %d", d3[0], d3[1], d3[2]);
    ck_end();
}

static void cart(void) {
    ck_begin("cart");
    int d[2] = {0, 0}, periods[2] = {1, 0};
    CHECK_MPI(MPI_Dims_create(ck.size, 2, d));
    MPI_Comm cart = MPI_COMM_NULL;
    CHECK_MPI(MPI_Cart_create(MPI_COMM_WORLD, 2, d, periods, 0, &cart));
    int status = -1, nd = -1;
    CHECK_MPI(MPI_Topo_test(cart, &status));
    CHECK(status == MPI_CART, "topo_test %d", status);
    CHECK_MPI(MPI_Cartdim_get(cart, &nd));
    CHECK(nd == 2, "ndims %d", nd);
    int rank, coords[2], gd[2], gp[2], gc[2];
    MPI_Comm_rank(cart, &rank);
    CHECK_MPI(MPI_Cart_coords(cart, rank, 2, coords));
    CHECK(coords[0] == rank / d[1] && coords[1] == rank % d[1], "coords of %d: %d %d", rank, coords[0], coords[1]);
    int back = -1;
    CHECK_MPI(MPI_Cart_rank(cart, coords, &back));
    CHECK(back == rank, "rank of coords %d", back);
    CHECK_MPI(MPI_Cart_get(cart, 2, gd, gp, gc));
    CHECK(gd[0] == d[0] && gd[1] == d[1] && gp[0] == 1 && gp[1] == 0 && gc[0] == coords[0], "cart_get");
    int src, dst;
    CHECK_MPI(MPI_Cart_shift(cart, 0, 1, &src, &dst));
    CHECK(dst == ((coords[0] + 1) % d[0]) * d[1] + coords[1], "shift dim 0 dest %d", dst);
    CHECK_MPI(MPI_Cart_shift(cart, 1, 1, &src, &dst));
    CHECK(dst == (coords[1] + 1 < d[1] ? rank + 1 : MPI_PROC_NULL), "shift dim 1 dest %d", dst);
    CHECK(src == (coords[1] > 0 ? rank - 1 : MPI_PROC_NULL), "shift dim 1 source %d", src);
    /* Neighbor allgather: from each neighbor (dim 0 down, up, dim 1 down, up) its rank. */
    int got[4] = {-9, -9, -9, -9};
    CHECK_MPI(MPI_Neighbor_allgather(&rank, 1, MPI_INT, got, 1, MPI_INT, cart));
    for (int k = 0; k < 2; k++) {
        int s, t;
        MPI_Cart_shift(cart, k, 1, &s, &t);
        CHECK(got[2 * k] == (s == MPI_PROC_NULL ? -9 : s), "dim %d from below: %d, expected %d", k, got[2 * k], s);
        CHECK(got[2 * k + 1] == (t == MPI_PROC_NULL ? -9 : t), "dim %d from above: %d, expected %d", k, got[2 * k + 1], t);
    }
    /* Neighbor alltoall: block i goes to neighbor i and says (sender, i). */
    int out[4], in[4] = {-9, -9, -9, -9};
    for (int i = 0; i < 4; i++) out[i] = rank * 10 + i;
    CHECK_MPI(MPI_Neighbor_alltoall(out, 1, MPI_INT, in, 1, MPI_INT, cart));
    for (int k = 0; k < 2; k++) {
        int s, t;
        MPI_Cart_shift(cart, k, 1, &s, &t);
        /* From below came what the lower neighbor sent up (its block 2k+1), from above its block 2k. */
        if (s != MPI_PROC_NULL) CHECK(in[2 * k] == s * 10 + 2 * k + 1, "alltoall dim %d below: %d", k, in[2 * k]);
        if (t != MPI_PROC_NULL) CHECK(in[2 * k + 1] == t * 10 + 2 * k, "alltoall dim %d above: %d", k, in[2 * k + 1]);
    }
    /* A sub-grid of the rows. */
    int remain[2] = {0, 1};
    MPI_Comm row = MPI_COMM_NULL;
    CHECK_MPI(MPI_Cart_sub(cart, remain, &row));
    int rs = -1;
    MPI_Comm_size(row, &rs);
    CHECK(rs == d[1], "row size %d", rs);
    MPI_Comm dup = MPI_COMM_NULL;
    CHECK_MPI(MPI_Comm_dup(cart, &dup));
    CHECK_MPI(MPI_Topo_test(dup, &status));
    CHECK(status == MPI_CART, "a duplicate keeps the topology: %d", status);
    MPI_Comm_free(&dup);
    MPI_Comm_free(&row);
    MPI_Comm_free(&cart);
    CHECK_MPI(MPI_Topo_test(MPI_COMM_WORLD, &status));
    CHECK(status == MPI_UNDEFINED, "world has no topology: %d", status);
    ck_end();
}

static void graph(void) {
    ck_begin("graph and dist_graph");
    int n = ck.size, rank = ck.rank;
    /* A ring as a graph: node i has neighbors i-1 and i+1. */
    int index[64], edges[128];
    for (int i = 0; i < n; i++) {
        index[i] = 2 * (i + 1);
        edges[2 * i] = (i + n - 1) % n;
        edges[2 * i + 1] = (i + 1) % n;
    }
    MPI_Comm g = MPI_COMM_NULL;
    CHECK_MPI(MPI_Graph_create(MPI_COMM_WORLD, n, index, edges, 0, &g));
    int nn = -1, ne = -1, count = -1, nb[2] = {-1, -1};
    CHECK_MPI(MPI_Graphdims_get(g, &nn, &ne));
    CHECK(nn == n && ne == 2 * n, "graphdims %d %d", nn, ne);
    CHECK_MPI(MPI_Graph_neighbors_count(g, rank, &count));
    CHECK(count == 2, "neighbors_count %d", count);
    CHECK_MPI(MPI_Graph_neighbors(g, rank, 2, nb));
    CHECK(nb[0] == (rank + n - 1) % n && nb[1] == (rank + 1) % n, "neighbors %d %d", nb[0], nb[1]);
    int got[2] = {-1, -1};
    CHECK_MPI(MPI_Neighbor_allgather(&rank, 1, MPI_INT, got, 1, MPI_INT, g));
    CHECK(got[0] == nb[0] && got[1] == nb[1], "graph allgather %d %d", got[0], got[1]);
    MPI_Comm_free(&g);

    /* The same ring as a distributed graph, each rank naming its out edge only. */
    int dest = (rank + 1) % n, w = rank + 100;
    MPI_Comm dg = MPI_COMM_NULL;
    CHECK_MPI(MPI_Dist_graph_create(MPI_COMM_WORLD, 1, &rank, (int[]){1}, &dest, &w, MPI_INFO_NULL, 0, &dg));
    int indeg = -1, outdeg = -1, weighted = -1;
    CHECK_MPI(MPI_Dist_graph_neighbors_count(dg, &indeg, &outdeg, &weighted));
    CHECK(indeg == 1 && outdeg == 1 && weighted, "dist degrees %d %d %d", indeg, outdeg, weighted);
    int s = -1, sw = -1, d = -1, dw = -1;
    CHECK_MPI(MPI_Dist_graph_neighbors(dg, 1, &s, &sw, 1, &d, &dw));
    CHECK(s == (rank + n - 1) % n && sw == s + 100 && d == dest && dw == w, "dist neighbors %d/%d %d/%d", s, sw, d, dw);
    int from = -1;
    CHECK_MPI(MPI_Neighbor_allgather(&rank, 1, MPI_INT, &from, 1, MPI_INT, dg));
    CHECK(from == s, "dist allgather %d", from);
    MPI_Comm_free(&dg);

    int srcs[1] = {(rank + n - 1) % n}, dsts[1] = {(rank + 1) % n};
    MPI_Comm adj = MPI_COMM_NULL;
    CHECK_MPI(MPI_Dist_graph_create_adjacent(MPI_COMM_WORLD, 1, srcs, MPI_UNWEIGHTED, 1, dsts, MPI_UNWEIGHTED, MPI_INFO_NULL, 0, &adj));
    double mine = rank + 0.5, theirs = -1;
    CHECK_MPI(MPI_Neighbor_alltoall(&mine, 1, MPI_DOUBLE, &theirs, 1, MPI_DOUBLE, adj));
    CHECK(theirs == srcs[0] + 0.5, "adjacent alltoall %g", theirs);
    int counts[1] = {1}, displs[1] = {0};
    theirs = -1;
    CHECK_MPI(MPI_Neighbor_alltoallv(&mine, counts, displs, MPI_DOUBLE, &theirs, counts, displs, MPI_DOUBLE, adj));
    CHECK(theirs == srcs[0] + 0.5, "adjacent alltoallv %g", theirs);
    MPI_Comm_free(&adj);
    ck_end();
}

int main(int argc, char **argv) {
    ck_init(&argc, &argv);
    dims();
    cart();
    graph();
    return ck_finish();
}
