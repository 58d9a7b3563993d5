/*
 * llamaparse_options.c — tvdb.llamaparse_options, the parse options passed
 * through to LlamaParse with every upload (a JSON object).  LlamaParse
 * refuses a field it does not know (extra_forbidden), and would then refuse
 * every document, so a name outside its documented options is refused when
 * the setting is made.  The names are those of the official client,
 * run-llama/llama-cloud-py: types/parsing_upload_file_params.py (v1, as
 * of 394d0a8) and types/parsing_create_params.py (v2).  The fields tvdb
 * itself sends (the file, the callback) cannot be set here.
 *
 * Checked with PostgreSQL's JSON lexer, which reports malformed input
 * without raising: the check runs while configuration files are read.
 */
#include "tvdb.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

static const char *const v1_fields[] = {
	"adaptive_long_table", "aggressive_table_extraction", "annotate_links", "auto_mode",
	"auto_mode_configuration_json", "auto_mode_trigger_on_image_in_page",
	"auto_mode_trigger_on_regexp_in_page", "auto_mode_trigger_on_table_in_page",
	"auto_mode_trigger_on_text_in_page", "azure_openai_api_version", "azure_openai_deployment_name",
	"azure_openai_endpoint", "azure_openai_key", "bbox_bottom", "bbox_left", "bbox_right", "bbox_top",
	"bounding_box", "compact_markdown_table", "complemental_formatting_instruction",
	"content_guideline_instruction", "continuous_mode", "disable_image_extraction", "disable_ocr",
	"disable_reconstruction", "do_not_cache", "do_not_unroll_columns", "extract_charts",
	"extract_layout", "extract_printed_page_number", "fast_mode", "formatting_instruction",
	"guess_xlsx_sheet_name", "hide_footers", "hide_headers", "high_res_ocr",
	"html_make_all_elements_visible", "html_remove_fixed_elements", "html_remove_navigation_elements",
	"http_proxy", "ignore_document_elements_for_layout_detection", "inline_images_in_markdown",
	"invalidate_cache", "is_formatting_instruction", "job_timeout_extra_time_per_page_in_seconds",
	"job_timeout_in_seconds", "keep_page_separator_when_merging_tables", "language", "layout_aware",
	"line_level_bounding_box", "markdown_table_multiline_header_separator", "max_pages",
	"merge_tables_across_pages_in_markdown", "model", "outlined_table_extraction",
	"output_pdf_of_document", "output_tables_as_HTML", "page_error_tolerance", "page_footer_prefix",
	"page_footer_suffix", "page_header_prefix", "page_header_suffix", "page_prefix", "page_separator",
	"page_suffix", "parse_mode", "parsing_instruction", "precise_bounding_box", "premium_mode",
	"presentation_out_of_bounds_content", "presentation_skip_embedded_data",
	"preserve_layout_alignment_across_pages", "preserve_very_small_text", "preset",
	"remove_hidden_text", "replace_failed_page_mode", "replace_failed_page_with_error_message_prefix",
	"replace_failed_page_with_error_message_suffix", "save_images", "skip_diagonal_text",
	"specialized_chart_parsing_agentic", "specialized_chart_parsing_efficient",
	"specialized_chart_parsing_plus", "specialized_image_parsing", "spreadsheet_extract_sub_tables",
	"spreadsheet_force_formula_computation", "strict_mode_buggy_font", "strict_mode_image_extraction",
	"strict_mode_image_ocr", "strict_mode_reconstruction", "structured_output",
	"structured_output_json_schema", "structured_output_json_schema_name", "system_prompt",
	"system_prompt_append", "take_screenshot", "target_pages", "tier", "use_vendor_multimodal_model",
	"user_prompt", "vendor_multimodal_api_key", "vendor_multimodal_model_name", "version",
};

static const char *const v2_fields[] = {
	"tier", "version", "agentic_options", "client_name", "crop_box", "disable_cache", "fast_options",
	"http_proxy", "input_options", "output_options", "page_ranges", "processing_control",
	"processing_options",
};

/* What tvdb sends itself: the document and where to call back. */
static const char *const owned_fields[] = {
	"file", "input_url", "file_id", "source_url", "webhook_url", "webhook_configurations",
};

static bool
listed(const char *name, const char *const *list, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(name, list[i]) == 0)
			return true;
	return false;
}

typedef struct Check
{
	int			depth;
	bool		is_object;
	int			api;			/* TVDB_LLAMAPARSE_V1 or _V2 */
	char	   *problem;
} Check;

static void
nest_start(void *state)
{
	Check	   *c = state;

	if (c->depth == 0 && c->problem == NULL)
		c->is_object = true;
	c->depth++;
}

static void
array_start(void *state)
{
	Check	   *c = state;

	if (c->depth == 0 && c->problem == NULL)
		c->problem = pstrdup("it is an array, not a JSON object");
	c->depth++;
}

static void
nest_end(void *state)
{
	((Check *) state)->depth--;
}

static void
root_scalar(void *state, char *token, JsonTokenType type)
{
	Check	   *c = state;

	if (c->depth == 0 && c->problem == NULL)
		c->problem = pstrdup("it is not a JSON object");
}

static void
field_start(void *state, char *fname, bool isnull)
{
	Check	   *c = state;
	bool		v2 = c->api == TVDB_LLAMAPARSE_V2;

	if (c->depth != 1 || c->problem != NULL)
		return;
	if (listed(fname, owned_fields, lengthof(owned_fields)))
		c->problem = psprintf("\"%s\" is sent by tvdb itself", fname);
	else if (v2 ? !listed(fname, v2_fields, lengthof(v2_fields))
			 : !listed(fname, v1_fields, lengthof(v1_fields)))
		c->problem = psprintf("\"%s\" is not one of LlamaParse's documented %s parse options",
							  fname, v2 ? "v2" : "v1");
}

/*
 * What is wrong with these options for this API version, as a phrase, or
 * NULL.  Never raises.
 */
char *
tvdb_llamaparse_options_problem(const char *json, int api)
{
	Check		c = {0, false, api, NULL};
	JsonSemAction sem = {0};
	JsonLexContext *lex;
	JsonParseErrorType err;

	if (json == NULL || json[0] == '\0')
		return NULL;
	sem.semstate = &c;
	sem.object_start = nest_start;
	sem.object_end = nest_end;
	sem.array_start = array_start;
	sem.array_end = nest_end;
	sem.object_field_start = field_start;
	sem.scalar = root_scalar;
	lex = makeJsonLexContextCstringLen((char *) json, strlen(json), PG_UTF8, true);
	err = pg_parse_json(lex, &sem);
	if (err != JSON_SUCCESS)
		return pstrdup("it is not valid JSON");
	if (c.problem == NULL && !c.is_object)
		return pstrdup("it is not a JSON object");
	return c.problem;
}
