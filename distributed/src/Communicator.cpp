#include <repshape/distributed/Communicator.h>
