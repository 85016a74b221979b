/* The subcommand table: KD_COMMAND(name, function, summary). Every planned subcommand is listed
 * here once; its function lives in src/cli/cmd_<name>.c. Functions are declared weak, so a
 * subcommand whose file is not built yet is simply absent from `kdstep --help`. */
KD_COMMAND("run", kd_cmd_run, "Run a whole job file: generate, train and eval in order")
KD_COMMAND("generate", kd_cmd_generate, "Generate a distillation dataset from a teacher (MPI)")
KD_COMMAND("train", kd_cmd_train, "Train the student with the combined distillation loss (MPI)")
KD_COMMAND("eval", kd_cmd_eval, "Decode held-out prompts with the student and score its tool calls")
KD_COMMAND("score", kd_cmd_score, "Score predicted tool calls against answers with BFCL's AST rules")
KD_COMMAND("inspect", kd_cmd_inspect, "Summarize a dataset, or show one sample with its spans")
KD_COMMAND("export", kd_cmd_export, "Export a dataset as the seed's JSONL records")
KD_COMMAND("plot", kd_cmd_plot, "Plot a training run's curves to PNG")
KD_COMMAND("prompts", kd_cmd_prompts, "Prompt sets: `prompts synth` writes a synthetic set over a registry")
KD_COMMAND("teacher", kd_cmd_teacher, "Teachers: `teacher serve` runs the stub teacher as an OpenAI server")
KD_COMMAND("extract", kd_cmd_extract, "Extract tool calls, arguments and integration spans from teacher text")
KD_COMMAND("tokenize", kd_cmd_tokenize, "Encode text with a Hugging Face tokenizer.json")
KD_COMMAND("tokenizer", kd_cmd_tokenizer, "Tokenizers: `tokenizer train` trains a byte-level BPE")
KD_COMMAND("tools", kd_cmd_tools, "Load a tool registry and validate argument objects against it")
KD_COMMAND("config", kd_cmd_config, "Print the resolved configuration or the reference of every key")
