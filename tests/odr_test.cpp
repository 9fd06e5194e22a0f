// A second translation unit including every public header: a missing `inline` breaks the link.
#include <procpool/procpool.hpp>
