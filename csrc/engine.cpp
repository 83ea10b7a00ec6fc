// What tch's C API lacks: autograd::grad with grad_outputs, and torch's own errors and warnings.
//
// tch turns every libtorch exception into a string (with its C++ backtrace symbolised, which
// takes milliseconds) and lets warnings go to stderr. torch's own bindings instead keep the
// exception object and translate it for Python (`HANDLE_TH_ERRORS`), so a Python hook's own
// exception comes back as itself, and buffer warnings for Python's `warnings` module
// (`PyWarningHandler`). This file does the same for our calls, without Python headers: the
// exception is kept as a std::exception_ptr, translated later with the GIL held by torch's own
// `translate_exception_to_python`, and warnings are collected by a c10::WarningHandler.
#include <c10/core/DefaultDtype.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace torch {
// Exported by libtorch_python (torch/csrc/Exceptions.h, which needs Python's headers): sets the
// Python error for an exception the way every torch._C entry point does. Needs the GIL.
void translate_exception_to_python(const std::exception_ptr&);
}  // namespace torch

extern "C" {

// An exception thrown by libtorch, kept whole, with its message for Rust.
struct jac_exception {
  std::exception_ptr exception;
  std::string message;
  // 0: a c10::Error (typed or not); 1: any other C++ exception (a Python one among them).
  int kind;
};

// Warnings raised while installed, in order.
struct jac_warnings : c10::WarningHandler {
  std::vector<c10::Warning> items;
  void process(const c10::Warning& warning) override { items.push_back(warning); }
};

static jac_exception* capture_current_exception() {
  auto* captured = new jac_exception{std::current_exception(), std::string(), 1};
  try {
    throw;
  } catch (const c10::Error& e) {
    // Without the backtrace: symbolising it is what made errors take milliseconds.
    captured->message = e.what_without_backtrace();
    captured->kind = 0;
  } catch (const std::exception& e) {
    captured->message = e.what();
  } catch (...) {
    captured->message = "unknown C++ exception";
  }
  return captured;
}

// The gradient of `output` with respect to `input`, with `grad_output` as the vector of the
// vector-Jacobian product (nullptr: ones, for a scalar output). The graph is always kept. On
// success returns 0 and sets *result (an undefined tensor where no gradient reaches `input`);
// otherwise returns 1 and sets *error, which the caller frees.
int jac_grad(const at::Tensor* output, const at::Tensor* input, const at::Tensor* grad_output,
             bool create_graph, at::Tensor** result, jac_exception** error) {
  try {
    torch::autograd::variable_list grad_outputs;
    if (grad_output != nullptr) {
      grad_outputs.push_back(*grad_output);
    }
    auto grads = torch::autograd::grad({*output}, {*input}, grad_outputs,
                                       /*retain_graph=*/true, create_graph,
                                       /*allow_unused=*/true);
    *result = new at::Tensor(grads.at(0));
    return 0;
  } catch (...) {
    *error = capture_current_exception();
    return 1;
  }
}

// Whether gradients are being recorded (torch.is_grad_enabled()) on this thread.
bool jac_grad_enabled() { return c10::GradMode::is_enabled(); }

// Whether torch.inference_mode() is on for this thread.
bool jac_inference_mode_enabled() { return c10::InferenceMode::is_enabled(); }

// torch.get_default_dtype(), as a c10::ScalarType: the dtype of an unqualified torch.randn.
int jac_default_dtype() { return static_cast<int>(c10::get_default_dtype_as_scalartype()); }

// The retains_grad hooks (`t.retain_grad()`) taken off the nodes of a graph while the
// regularizer runs its own backward passes, which must not leave gradients in `t.grad`; put back
// by jac_scan_free.
// Edges hold nodes by std::shared_ptr up to torch 2.14, by c10::intrusive_ptr from 2.15 on.
using jac_node_ptr = decltype(torch::autograd::Edge::function);

struct jac_scan {
  std::vector<std::pair<jac_node_ptr,
                        std::unordered_map<size_t, std::unique_ptr<torch::autograd::FunctionPreHook>>>>
      detached;
};

// Walks the nodes of `output`'s graph from which a gradient reaches `input` (the nodes a backward
// pass from `output` to `input` runs), without descending past `input`'s own node. Sets *compiled
// when one of them is a torch.compile'd function's backward (CompiledFunctionBackward, which
// cannot be differentiated again; names of nodes written in Python take the GIL, which PyNode
// does), when `find_compiled`. With `detach_retained_grad`, takes their retains_grad hooks off
// into *scan (else *scan is null), for jac_scan_free to put back. Returns 0, or 1 with *error set.
int jac_scan_graph(const at::Tensor* output, const at::Tensor* input, bool find_compiled,
                   bool detach_retained_grad, bool* compiled, jac_scan** scan,
                   jac_exception** error) {
  using torch::autograd::Node;
  *compiled = false;
  *scan = nullptr;
  try {
    auto root = output->grad_fn();
    if (!root || !input->requires_grad()) {
      return 0;
    }
    Node* target = torch::autograd::impl::gradient_edge(*input).function.get();
    auto result = std::make_unique<jac_scan>();
    // Post-order, iteratively (graphs can be deeper than the C++ stack): a node reaches the
    // target when one of its next edges does.
    std::unordered_map<Node*, bool> reaches;
    struct Frame {
      Node* node;
      size_t next;
      bool reaches;
    };
    std::vector<Frame> stack;
    auto finish = [&](Node* node, bool reached) {
      reaches.emplace(node, reached);
      if (!reached) {
        return;
      }
      if (find_compiled && !*compiled &&
          node->name().find("CompiledFunctionBackward") != std::string::npos) {
        *compiled = true;
      }
      auto& hooks = node->retains_grad_hooks();
      if (detach_retained_grad && !hooks.empty()) {
        result->detached.emplace_back(jac_node_ptr(node->getptr()), std::move(hooks));
        hooks.clear();
      }
    };
    if (root.get() == target) {
      finish(root.get(), true);
    } else {
      stack.push_back({root.get(), 0, false});
      reaches.emplace(root.get(), false);  // on the stack: a DAG never comes back to it
    }
    while (!stack.empty()) {
      Frame& frame = stack.back();
      if (frame.next == frame.node->next_edges().size()) {
        Node* node = frame.node;
        bool reached = frame.reaches;
        stack.pop_back();
        reaches.erase(node);
        finish(node, reached);
        if (!stack.empty()) {
          stack.back().reaches = stack.back().reaches || reached;
        }
        continue;
      }
      Node* next = frame.node->next_edge(frame.next++).function.get();
      if (!next) {
        continue;
      }
      if (next == target) {
        if (reaches.find(next) == reaches.end()) {
          finish(next, true);
        }
        frame.reaches = true;
        continue;
      }
      auto seen = reaches.find(next);
      if (seen != reaches.end()) {
        frame.reaches = frame.reaches || seen->second;
        continue;
      }
      reaches.emplace(next, false);
      stack.push_back({next, 0, false});
    }
    if (!result->detached.empty()) {
      *scan = result.release();
    }
    return 0;
  } catch (...) {
    *error = capture_current_exception();
    return 1;
  }
}

// Puts the detached retains_grad hooks back and frees the scan.
void jac_scan_free(jac_scan* scan) {
  for (auto& [node, hooks] : scan->detached) {
    auto& current = node->retains_grad_hooks();
    for (auto& [index, hook] : hooks) {
      current.emplace(index, std::move(hook));
    }
  }
  delete scan;
}

const char* jac_exception_message(const jac_exception* error) { return error->message.c_str(); }

int jac_exception_kind(const jac_exception* error) { return error->kind; }

// Sets the Python error for the exception, as torch would; needs the GIL.
void jac_exception_set_python_error(const jac_exception* error) {
  torch::translate_exception_to_python(error->exception);
}

void jac_exception_free(jac_exception* error) { delete error; }

jac_warnings* jac_warnings_new() { return new jac_warnings(); }

void jac_warnings_free(jac_warnings* warnings) { delete warnings; }

// Routes this thread's libtorch warnings to `warnings`; returns the handler to restore.
void* jac_warnings_install(jac_warnings* warnings) {
  auto* previous = c10::WarningUtils::get_warning_handler();
  c10::WarningUtils::set_warning_handler(warnings);
  return previous;
}

void jac_warnings_restore(void* previous) {
  c10::WarningUtils::set_warning_handler(static_cast<c10::WarningHandler*>(previous));
}

size_t jac_warnings_len(const jac_warnings* warnings) { return warnings->items.size(); }

// The i-th warning: whether it is a DeprecationWarning (else a UserWarning), its message,
// where libtorch raised it, and whether the message is to be shown without that location.
void jac_warnings_get(const jac_warnings* warnings, size_t i, bool* deprecation,
                      const char** message, const char** file, uint32_t* line, bool* verbatim) {
  const c10::Warning& warning = warnings->items.at(i);
  *deprecation = std::holds_alternative<c10::DeprecationWarning>(warning.type());
  *message = warning.msg().c_str();
  *file = warning.source_location().file;
  *line = warning.source_location().line;
  *verbatim = warning.verbatim();
}

}  // extern "C"
