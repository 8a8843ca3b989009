#include <repshape/regularizers/Regularizers.h>
