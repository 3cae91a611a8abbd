// MPI for Swift. Open MPI defines its predefined handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM,
// MPI_IN_PLACE, ...) as macros over casts of global symbols, which Swift does not import; these
// inline functions return them.
#ifndef RECUR_CMPI_SHIM_H
#define RECUR_CMPI_SHIM_H

#include <mpi.h>

static inline MPI_Comm recur_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype recur_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype recur_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype recur_mpi_int(void) { return MPI_INT; }
static inline MPI_Datatype recur_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op recur_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op recur_mpi_max(void) { return MPI_MAX; }
static inline void *recur_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Errhandler recur_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }

#endif
