#pragma once
// expectDataError(fn, {parts…}): `fn` must throw DataError whose message contains every part.

#include "data/Data.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace repshape::data::test {

template <typename Fn>
void expectDataError(Fn fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no DataError thrown; expected one mentioning " << ::testing::PrintToString(parts);
  } catch (const DataError& e) {
    for (const auto& part : parts) EXPECT_THAT(e.what(), ::testing::HasSubstr(part));
  }
}

}  // namespace repshape::data::test
