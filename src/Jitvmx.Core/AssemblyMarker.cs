// SPDX-License-Identifier: MIT
namespace Jitvmx;
internal static class AssemblyMarker { }
